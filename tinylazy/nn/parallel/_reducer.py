"""Gradient averaging for DistributedDataParallel: buckets, all-reduced while backward still runs.

The parameters that need grad are cut into buckets of about `cap_bytes` each, in the reverse order of
`parameters()` (backward produces the last layers' gradients first), never mixing dtypes or devices.
Each bucket owns one flat array: its parameters' gradients laid end to end, then one "present" flag per
parameter (1 where this rank has a gradient).

During a backward pass that follows a synchronizing forward, each parameter's post-accumulate-grad hook
marks it ready. When a bucket's last parameter is ready, its gradients divided by the world size are
written into the flat array (one pass: the division rides on the copy that gathers the gradients anyway)
and a non-blocking all-reduce (sum) of the whole bucket starts, while autograd goes on with earlier layers.
Buckets start strictly in index order on every rank (a full bucket waits for the ones before it): MPI
and NCCL match collectives by their order, so two ranks whose backward reaches the buckets in different
orders (a branch one rank skips) must still start them alike. When backward ends (autograd's end
callback), the buckets not started yet are sent (a parameter this rank did not use: zeros, flag 0),
every all-reduce is waited for, and each parameter's `.grad` becomes the average.

`.grad` is then the parameter's slice of the flat array (PyTorch's ``gradient_as_bucket_view=True``: no
copy back; the next synchronizing backward reuses the array, so a `.grad` tensor kept from an earlier step
changes, and ``zero_grad(set_to_none=False)`` zeroes the slices so that backward accumulates into the
bucket itself). With ``as_view=False`` the average is copied back into each parameter's own `.grad`
array instead (one more pass, PyTorch's default).

"Used" means: got a gradient in this backward or in a `no_sync()` backward since the last synchronizing
one (PyTorch's rule: gradients accumulated locally are averaged at the next sync even when the last
micro-batch did not touch the parameter). A parameter that no rank used keeps its `.grad` on every rank
(all present flags were 0); one that some rank used gets the average on every rank (a rank that did not
use it contributes zeros), so the ranks stay identical.
"""
from ... import autograd, backend
from ...tensor import Tensor
from ... import distributed as dist


class Bucket:
    """Parameters whose gradients travel together in one flat array; `views[k]` is parameter k's slice,
    shaped like it, which becomes its `.grad` after the all-reduce (or is copied into it: `as_view=False`)."""
    __slots__ = ("params", "flat", "views", "flags", "ready", "work")

    def __init__(self, params):
        self.params = params
        n = sum(p.array.size for p in params)
        first = params[0].array
        self.flat = backend.empty((n + len(params),), first.dtype, backend.device_of(first))
        self.views, off = [], 0
        for p in params:
            self.views.append(self.flat[off:off + p.array.size].reshape(p.array.shape))
            off += p.array.size
        self.flags = self.flat[n:]
        self.ready, self.work = set(), None

    def full(self):
        return len(self.ready) == len(self.params)

    def fill(self, world, used):
        """Gradient / world into each slice (in place when the gradient already is the slice), 1 into its
        flag; zeros and flag 0 for a parameter this rank did not use (not ready, not in `used`)."""
        xp = backend.xp_of(self.flat)
        for k, p in enumerate(self.params):
            view, g = self.views[k], p.grad
            if g is not None and (id(p) in self.ready or id(p) in used):
                xp.divide(g.array, world, out=view)
                self.flags[k] = 1
            else:
                if g is not None and g.array is view:       # keep the old gradient: the slice is reused
                    p.grad = Tensor(view.copy())
                view[...] = 0
                self.flags[k] = 0

    def write_back(self, as_view):
        """Each parameter that some rank has a gradient for gets the average: its slice as `.grad`
        (`as_view`), or copied into the `.grad` array it has (a new one if it has none)."""
        flags = backend.to_device(self.flags, "cpu")      # (one small host copy on a GPU)
        for k, p in enumerate(self.params):
            if flags[k] == 0:
                continue
            view = self.views[k]
            if as_view:
                if p.grad is None or p.grad.array is not view:
                    p.grad = Tensor(view)
            elif p.grad is None:
                p.grad = Tensor(view.copy())
            else:
                p.grad.array[...] = view


class Reducer:
    """The buckets of one DistributedDataParallel and the state of the backward pass now running."""

    def __init__(self, group, params, cap_bytes, as_view=True):
        self.group, self.as_view = group, as_view
        self.buckets, self.bucket_of = [], {}
        current, size, kind = [], 0, None
        for p in reversed(params):
            a = p.array
            here = (a.dtype, str(backend.device_of(a)))
            if current and (here != kind or size + a.nbytes > cap_bytes):
                self.buckets.append(Bucket(current))
                current, size = [], 0
            current.append(p)
            size += a.nbytes
            kind = here
        if current:
            self.buckets.append(Bucket(current))
        for b in self.buckets:
            for p in b.params:
                self.bucket_of[id(p)] = b
        self.handles = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]
        self.armed = self.queued = False
        self.next = 0                         # the index of the first bucket not started yet
        self.used = set()                     # ids of parameters that got a gradient under no_sync()

    def prepare(self):
        """A synchronizing forward ran: the next backward averages the gradients."""
        self.armed, self.queued, self.next = True, False, 0
        for b in self.buckets:
            b.ready.clear()
            b.work = None

    def disarm(self):
        """A forward under no_sync(): its backward only accumulates (what it touches counts as used)."""
        self.armed = False

    def _grad_ready(self, p):
        if not self.armed:                    # no_sync(): remember it for the next synchronizing backward
            self.used.add(id(p))
            return
        if not self.queued:                   # the first gradient of this backward: wait for the rest at its end
            autograd.queue_callback(self.finish)
            self.queued = True
        self.bucket_of[id(p)].ready.add(id(p))
        while self.next < len(self.buckets) and self.buckets[self.next].full():
            self._start(self.buckets[self.next])

    def _start(self, bucket):
        """Fill `bucket` (the next one in index order) and start its all-reduce."""
        self.next += 1
        try:
            bucket.fill(self.group.size, self.used)
            bucket.work = self.group.all_reduce(bucket.flat, dist.ReduceOp.SUM)     # of gradient / world
            for b in self.buckets:            # MPI moves started messages along only when it is called
                if b.work is not None and b is not bucket:
                    b.work.is_completed()
        except Exception as e:
            self.fail(e)

    def finish(self):
        """End of backward: send the buckets that did not fill, wait for all, write the averages back."""
        self.armed = False
        try:
            while self.next < len(self.buckets):
                self._start(self.buckets[self.next])
            self.used = set()
            for b in self.buckets:
                b.work.wait()
                b.write_back(self.as_view)
        except Exception as e:
            self.fail(e)

    def fail(self, error):
        """The other ranks are (or will be) inside the same all-reduces: stop the job rather than hang it."""
        if self.group.size > 1:
            self.group.abort(f"DistributedDataParallel: averaging the gradients failed: {type(error).__name__}: "
                             f"{error}")
        raise error

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []
