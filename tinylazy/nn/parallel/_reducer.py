"""Gradient averaging for DistributedDataParallel: buckets, all-reduced while backward still runs.

The parameters that need grad are cut into buckets of about `cap_bytes` each, in the reverse order of
`parameters()` (backward produces the last layers' gradients first), never mixing dtypes or devices.
Each bucket owns one flat array: its parameters' gradients laid end to end, then one "present" flag per
parameter (1 where this rank has a gradient).

During a backward pass that follows a synchronizing forward, each parameter's post-accumulate-grad hook
marks it ready; when a bucket's last parameter is ready, its gradients divided by the world size are
written into the flat array (one pass) and a non-blocking all-reduce (sum) of the whole bucket starts,
while autograd goes on with earlier layers. When backward ends (autograd's end callback), buckets that
never filled (parameters this rank did not use) are sent with zeros, every all-reduce is waited for, and
each parameter's `.grad` becomes its slice of the flat array, now the average (PyTorch's
`gradient_as_bucket_view`: no copy back; the next synchronizing backward reuses the array, so a `.grad`
tensor kept from an earlier step changes). A parameter that no rank used keeps its `.grad` (None) on every
rank (all present flags were 0); one that some rank used gets the average on every rank, so the ranks stay
identical.
"""
from ... import autograd, backend
from ...tensor import Tensor
from ... import distributed as dist


class Bucket:
    """Parameters whose gradients travel together in one flat array; `views[k]` is parameter k's slice,
    shaped like it, which becomes its `.grad` after the all-reduce (no copy back)."""
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

    def fill(self, world):
        """Gradient / world into each slice (in place when the gradient already is the slice), 1 into its
        flag; zeros and flag 0 for a parameter that got no gradient in this backward."""
        xp = backend.xp_of(self.flat)
        for k, p in enumerate(self.params):
            view, g = self.views[k], p.grad
            if g is not None and id(p) in self.ready:
                xp.divide(g.array, world, out=view)
                self.flags[k] = 1
            else:
                if g is not None and g.array is view:       # keep the old gradient: the slice is reused
                    p.grad = Tensor(view.copy())
                view[...] = 0
                self.flags[k] = 0

    def write_back(self):
        """Each parameter that some rank has a gradient for gets its slice, now the average, as `.grad`."""
        flags = backend.to_device(self.flags, "cpu")      # (one small host copy on a GPU)
        for k, p in enumerate(self.params):
            if flags[k] != 0 and (p.grad is None or p.grad.array is not self.views[k]):
                p.grad = Tensor(self.views[k])


class Reducer:
    def __init__(self, group, params, cap_bytes):
        self.group = group
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

    def prepare(self):
        """A synchronizing forward ran: the next backward averages the gradients."""
        self.armed, self.queued = True, False
        for b in self.buckets:
            b.ready.clear()
            b.work = None

    def _grad_ready(self, p):
        if not self.armed:
            return
        if not self.queued:                   # the first gradient of this backward: wait for the rest at its end
            autograd.queue_callback(self.finish)
            self.queued = True
        b = self.bucket_of[id(p)]
        b.ready.add(id(p))
        if len(b.ready) == len(b.params) and b.work is None:
            self._start(b)

    def _start(self, bucket):
        try:
            bucket.fill(self.group.size)
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
            for b in self.buckets:
                if b.work is None:
                    self._start(b)
            for b in self.buckets:
                b.work.wait()
                b.write_back()
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
