"""`nn.parallel.DistributedDataParallel`: data-parallel training, one process per rank, lazy models accepted.

    dist.init_process_group("mpi")                  # launched as: mpiexec -n 4 python train.py
    net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))
    model = nn.parallel.DistributedDataParallel(net)
    opt = optim.SGD(model.parameters(), lr=0.1)     # the wrapped module's own parameters
    for X, y in loader:                             # each rank its own share (DistributedSampler)
        opt.zero_grad(); F.cross_entropy(model(X), y).backward(); opt.step()

Every rank holds a whole replica. After each backward every parameter's `.grad` is the average of the
ranks' gradients, so with the same initial values and the same optimizer every replica stays identical:
training on N ranks with local batches B is training on one process with the N batches concatenated (when
the loss is a mean over the batch and the batches have equal sizes).

The first call, and how it differs from PyTorch (whose DDP refuses uninitialized parameters):

1. A lazy model: every rank infers its sizes from its own input with a shape-only trace (meta device, no
   FLOPs). The ranks then exchange what they inferred. If any rank failed, every rank raises (the failing
   rank its own error, the others a `DistributedError` naming it); if the sizes differ, every rank raises
   `ShapeError` naming the layer and each rank's size. Either way nothing is materialized on any rank: the
   trace was rolled back, the model is lazy again. Otherwise each rank allocates its parameters (on its
   input's device, with its floating dtype, unless the model was placed with `.to()`).
2. Rank 0's parameters and buffers are broadcast to all ranks, before the first computation.
   A model that is not lazy goes through 1-2 in the constructor, as in PyTorch.

Each forward broadcasts rank 0's buffers first (BatchNorm's running statistics; `broadcast_buffers=True`,
PyTorch's default). Gradients are averaged by bucketed all-reduce that starts during backward (see
_reducer.py); `no_sync()` skips it, so gradients accumulate locally until the next synchronizing backward.
Batch norm normalizes each rank's batch with that rank's statistics (as PyTorch's DDP without SyncBatchNorm).

A rank that raises in forward after the first call (or while its gradients are averaged) would leave the
others waiting inside a collective: it prints the error and aborts the whole job (MPI_Abort) instead.
"""
import contextlib

from ... import autograd
from ... import distributed as dist
from ...errors import ShapeError
from ...tensor import Tensor
from .. import lazy
from ..module import Module
from ..parameter import is_lazy
from ._reducer import Reducer


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training over the default process group (see the module doc).

    `module` is the wrapped model (``ddp.module``); the wrapper's `state_dict()` keys carry the
    ``module.`` prefix, as PyTorch's do (save ``ddp.module.state_dict()`` for a checkpoint that a plain
    model loads). `bucket_cap_mb` sets the bucket size (default 25 MiB, PyTorch's).

    PyTorch's other arguments, and what they mean here:
    - `find_unused_parameters`: accepted, no effect; unused parameters are always handled, at no cost. A
      parameter this rank did not use in the backward (nor in a `no_sync()` backward since the last sync)
      contributes zeros to the average; one that no rank used keeps its `.grad` unchanged (None stays
      None). PyTorch with False raises for such a parameter; with True it does the same as here.
    - `gradient_as_bucket_view`: True by default here (PyTorch: False). After a synchronizing backward each
      `.grad` is a view of its slice of the bucket: no copy back, no second copy of the gradients in
      memory; but a `.grad` tensor kept from an earlier step changes at the next synchronizing backward,
      and ``zero_grad(set_to_none=False)`` zeroes the bucket in place. False copies the average into each
      parameter's own `.grad` array instead (one more pass over the gradients).
    - `device_ids`, `output_device`: ignored (one device per process: the input's); `dim` must be 0;
      `process_group` must be None or the default group; `static_graph`: accepted, no effect.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False,
                 gradient_as_bucket_view=True, static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module, got {type(module).__name__}")
        if dim != 0:
            raise ValueError(f"DistributedDataParallel: only dim=0 (the batch dimension) is supported, got {dim}")
        if process_group is not None and process_group is not dist.group():
            raise ValueError("DistributedDataParallel: only the default process group is supported")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        self.group = dist.group()                      # raises the clear error when there is none
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.bucket_bytes = int(bucket_cap_mb * 2 ** 20)
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self.require_backward_grad_sync = True
        self.reducer = None                            # built once the parameters exist and agree
        if not module.has_uninitialized_params():
            self._agree(None, None)

    # --- calling ------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self.reducer is None:
            self._agree(args, kwargs)
        return super().__call__(*args, **kwargs)

    def forward(self, *inputs, **kwargs):
        if self.reducer is None:
            raise RuntimeError("DistributedDataParallel: call the wrapper (ddp(x)), not ddp.forward(x): the "
                               "first call agrees on the sizes and broadcasts rank 0's values")
        group = self.group
        try:
            if self.broadcast_buffers and group.size > 1:
                self._broadcast(list(self.module.buffers()))
            out = self.module(*inputs, **kwargs)
        except Exception as e:
            if group.size > 1:
                group.abort(f"DistributedDataParallel.forward raised {type(e).__name__}: {e} (the other ranks "
                            "would wait for this one forever)")
            raise
        if autograd.is_grad_enabled():
            if self.require_backward_grad_sync:
                self.reducer.prepare()
            else:
                self.reducer.disarm()         # this graph's backward accumulates locally
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward only accumulates local gradients; the first backward after it averages them."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    # --- the first call: agree on sizes, then start from rank 0's values ---------------------------------
    def _agree(self, args, kwargs):
        module = self.module
        names = [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]
        error, shapes = None, None
        try:
            if module.has_uninitialized_params():
                if kwargs:
                    raise TypeError("DistributedDataParallel: the first call of a lazy model must pass its "
                                    "inputs positionally (they are traced on the meta device)")
                shapes = _traced_shapes(module, args)
            else:
                shapes = _shapes(module)
        except Exception as e:
            error = e
        report = {"error": None if error is None else f"{type(error).__name__}: {error}",
                  "names": names, "shapes": shapes}
        reports = [None] * self.group.size
        dist.all_gather_object(reports, report)
        if error is not None:
            raise error
        failed = [(r, rep["error"]) for r, rep in enumerate(reports) if rep["error"] is not None]
        if failed:
            raise dist.DistributedError(
                "DistributedDataParallel: the first forward failed on "
                + "; ".join(f"rank {r}: {msg}" for r, msg in failed)
                + ". Nothing was materialized on any rank (the model is as it was)")
        self._check_same(reports, names)
        if module.has_uninitialized_params():
            device, dtype = _placement(module, args)
            _trace(module, args, keep=True, device=device, dtype=dtype)
        still = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if is_lazy(t)]
        if still:                             # the same on every rank: their shapes agreed, None included
            raise dist.DistributedError(
                f"DistributedDataParallel: the first forward did not reach {', '.join(still[:5])}"
                f"{', ...' if len(still) > 5 else ''}, which stay lazy; every parameter must be materialized by "
                "the first call (or call module.materialize(example) before wrapping it)")
        tensors = list(module.parameters()) + list(module.buffers())
        self._broadcast(tensors)
        params = [p for p in module.parameters() if p.requires_grad]
        self.reducer = Reducer(self.group, params, self.bucket_bytes, self.gradient_as_bucket_view)

    def _check_same(self, reports, names):
        if any(rep["names"] != names for rep in reports):
            raise ValueError("DistributedDataParallel: the ranks' models have different parameters and buffers "
                             "(names): every rank must build the same model")
        for i, name in enumerate(names):
            seen = [rep["shapes"][i] for rep in reports]
            if any(s != seen[0] for s in seen):
                layer = name.rpartition(".")[0]
                where = lazy.describe(self.module.get_submodule(layer)) if layer else "the model"
                sizes = ", ".join(f"rank {r}: {_fmt(s)}" for r, s in enumerate(seen))
                raise ShapeError(f"DistributedDataParallel: the ranks inferred different sizes for {where}, "
                                 f"parameter 'module.{name}': {sizes}. Every rank must give the model inputs "
                                 "with the same feature sizes; nothing was materialized (the model is lazy again "
                                 "on every rank)")

    def _broadcast(self, tensors):
        works = [dist.broadcast(t, 0, async_op=True) for t in tensors]
        for w in works:
            w.wait()

    def extra_repr(self):
        return f"world_size={self.group.size}, backend={self.group.backend!r}"


def _shapes(module):
    """The shape of every parameter and buffer (None while lazy), in named_parameters + named_buffers order."""
    tensors = [t for _, t in module.named_parameters()] + [t for _, t in module.named_buffers()]
    return [None if is_lazy(t) else list(t.shape) for t in tensors]


def _traced_shapes(module, args):
    """What a shape-only trace on `args` infers, then rolled back: the model stays lazy."""
    seen = {}

    def record(mod, inputs, output):
        seen["shapes"] = _shapes(module)      # while the trace's meta arrays are still in place
    _trace(module, args, keep=False, hooks=[(module, record)])
    return seen["shapes"]


def _trace(module, args, keep, device=None, dtype=None, hooks=None):
    """`lazy.trace` on the tensors among `args`; a pre-hook puts the other arguments (flags, ints) back in
    their places, since the trace only takes tensors."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    if len(tensors) == len(args):
        return lazy.trace(module, args, device, dtype, keep=keep, hooks=hooks)

    def restore(mod, metas):
        it = iter(metas)
        return tuple(next(it) if isinstance(a, Tensor) else a for a in args)
    handle = module.register_forward_pre_hook(restore)
    module._forward_pre_hooks.move_to_end(handle.id, last=False)     # before the user's pre-hooks
    try:
        return lazy.trace(module, tensors, device, dtype, keep=keep, hooks=hooks)
    finally:
        handle.remove()


def _placement(module, args):
    """(device, dtype) to materialize with: the first tensor input's device and floating dtype, as an eager
    first forward would; (None, None) when the model was placed with `.to()`, which then wins."""
    for t in list(module.parameters()) + list(module.buffers()):
        if is_lazy(t) and (t._lazy.device is not None or t._lazy.dtype is not None):
            return None, None
    first = next((a for a in args if isinstance(a, Tensor)), None)
    if first is None:
        return None, None
    return first.device, (first.dtype if first.dtype.kind == "f" else None)


def _fmt(shape):
    return "lazy" if shape is None else str(tuple(shape))
