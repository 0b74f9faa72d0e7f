"""Reverse-mode automatic differentiation, in two parts: how an op records the graph, how backward walks it.

Recording. An op is a `Function` subclass with `forward` and `backward` side by side, both on raw
NumPy/CuPy/meta arrays. `Function.apply(*args)` unwraps the tensors, runs `forward`, wraps the result in a
new Tensor, and -- when grad mode is on and some input requires grad -- records the call: the Function
instance becomes the result's `grad_fn`, a node that keeps its `_edges` (the input tensors that need a
gradient) and, as the context, whatever forward saved for backward.

Walking. `backward(loss)` lists the nodes reachable from the loss in topological order (each after the
nodes that feed it), then runs one loop over that list reversed: a node's gradient is complete when its
turn comes, because every node that consumes its output came earlier. The node's backward turns it into
one gradient per input; a leaf adds it to `.grad`, a node's output adds it to what that node has
received. Without retain_graph each node is freed once it ran (what forward saved, and its edges).

Beside this file: version counters (version_counter.py: a saved tensor changed in place is an error),
grad mode (grad_mode.py: no_grad, ... per thread), hooks of the backward pass (_grad_hooks.py, for
DistributedDataParallel), the optional gradient-reuse hook (grad_reuse.py: fewer copies), gradcheck.
"""
import numpy as np

from . import backend
from . import tensor as _tensor     # the Tensor class, as `_tensor.Tensor`: tensor.py imports this module
#                                     first, so the class does not exist yet when this line runs; it does
#                                     by the time any function below is called (and autograd never sets
#                                     attributes on tensor.py, nor tensor.py on autograd)
from ._grad_hooks import (_post_hooks, _end_callbacks, _hooked_leaves, _leaf_edge_done,  # noqa: F401
                          _flush_post_hooks, _run_post_hooks, _run_end_callbacks,
                          register_post_accumulate_grad_hook, queue_callback)
from .grad_mode import _state, GradMode, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .version_counter import (_check_versions, _share_counter_if_view, _storage,  # noqa: F401
                              _watch_declared, _watch_saved)


# --- recording: Function ---------------------------------------------------------------------------
class Function:
    """Base class of every differentiable op.

    Subclasses define ``forward(self, *arrays, **kw) -> array (or tuple of arrays)`` and
    ``backward(self, *grads) -> one gradient per positional argument of forward`` (None where an argument
    needs none). They may be written PyTorch's way instead, as ``@staticmethod``s taking ``ctx`` first:
    the engine calls ``cls.forward(ctx, ...)``, which fits both spellings.

    ``_saves`` declares what forward keeps for backward, for the version check: ((attribute, position),
    ...), each attribute holding (a view of) the array of input `position` (or of output -1-position) when
    forward set it to anything but None. Left None, the engine finds out by looking through the node's
    attributes after forward (slower, but right for any Function, custom ones included).
    """
    differentiable = True      # False: results never require grad (comparisons, argmax, ...)
    _view = False              # True: the output may be a view of input 0 (reshape, permute, basic index, ...)
    _saves = None              # what forward keeps, declared (see above)
    _saved_versions = None     # [(counter, version, array, input i or output -1-k)] of what forward kept
    _retained = None           # [(output index, tensor)] of outputs whose .grad is kept (retain_grad)
    _freed = False             # set when backward released the node (retain_graph=False)
    fresh_grads = False        # the gradient-reuse hook (grad_reuse.py): True promises new arrays from backward
    overwrites_grad = False    # ... True: backward may write over its incoming gradient when `grad_owned`
    grad_owned = False         # ... set by the hook before backward: the incoming gradient is the engine's alone

    # PyTorch's ctx helpers, for custom Functions written in its style
    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    def mark_non_differentiable(self, *outputs):
        pass

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run forward on the arrays of `args`; wrap the result(s); record the node if grad is needed."""
        Tensor = _tensor.Tensor
        raw, edges, on_cpu = list(args), [], True     # raw: the tensors among args replaced by their arrays
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                array = raw[i] = a.array
                if type(array) is not np.ndarray:
                    on_cpu = False
                if a.requires_grad:
                    edges.append((i, a))      # (position, tensor) of each input that requires grad
        if not on_cpu:                        # some array is CuPy or meta: they must all be on one device
            _check_one_device(cls, args)
        ctx = cls.__new__(cls)
        record = bool(edges) and _state.grad_enabled and cls.differentiable
        if record:
            needs = [False] * len(args)
            for i, _ in edges:
                needs[i] = True
            ctx.needs_input_grad = tuple(needs)
        else:
            ctx.needs_input_grad = (False,) * len(args)
        out = cls.forward(ctx, *raw, **kwargs) if kwargs else cls.forward(ctx, *raw)
        if type(out) is tuple:
            outs = tuple(Tensor._make(_as_array(o), record) for o in out)
        else:
            outs = (Tensor._make(out if type(out) is np.ndarray else _as_array(out), record),)
        if cls._view:
            _share_counter_if_view(outs[0], args[0])
        if record:
            _record(ctx, edges, args, outs)
        return outs if type(out) is tuple else outs[0]

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def backward(self, *grads):
        raise NotImplementedError(f"{type(self).__name__} defines no backward")

    def _release(self):
        """Free the node after backward ran through it without retain_graph: drop what forward saved and the
        edges (the input tensors, whose arrays would otherwise stay alive as long as the loss does); keep
        what reports a second backward through it."""
        nout = self._nout
        self.__dict__.clear()
        self._nout, self._freed = nout, True


def _record(ctx, edges, args, outs):
    """Make `ctx` the node of `outs`: its edges, its outputs' shapes, the versions of what forward saved."""
    saves = ctx._saves
    if saves is None:
        _watch_saved(ctx, args, outs)
    elif saves:
        _watch_declared(ctx, saves, args, outs)
    ctx._edges = edges
    ctx._nout = len(outs)
    if len(outs) == 1:
        outs[0].grad_fn = ctx                 # (its _out_index is 0 already)
    else:
        ctx._out_meta = [(o.array.shape, o.array.dtype) for o in outs]
        for k, t in enumerate(outs):
            t.grad_fn, t._out_index = ctx, k


def _as_array(out):
    """A forward's result as an array (NumPy reductions may return scalars)."""
    if type(out) is not np.ndarray and isinstance(out, (np.generic, float, int, bool)):
        return np.asarray(out)
    return out


def _check_one_device(cls, args):
    """Raise unless every tensor among `args` has its array on one device (NumPy arrays are all on cpu)."""
    first = None
    for a in args:
        if isinstance(a, _tensor.Tensor):
            if first is None:
                first = a
            elif type(a.array) is not type(first.array) or a.device != first.device:
                raise RuntimeError(f"{cls.__name__}: expected all tensors on the same device, "
                                   f"got {first.device} and {a.device}")


def unbroadcast(grad, shape):
    """Sum `grad` back to `shape`: undo NumPy broadcasting (leading dims added, size-1 dims stretched)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    g = grad.sum(axis=axes, keepdims=True) if axes else grad
    return g.reshape(shape)


# --- walking: backward -----------------------------------------------------------------------------
def backward(tensor, gradient=None, retain_graph=False):
    """Accumulate d(tensor)/d(leaf) * gradient into `.grad` of every leaf that requires grad."""
    grad = _initial_gradient(tensor, gradient)
    _end_callbacks.clear()                    # what a failed earlier backward left queued
    root = tensor.grad_fn
    if root is None:                          # a leaf: its gradient is `grad` itself
        _accumulate_leaf(tensor, grad.copy() if tensor.grad is None else grad, None)
        return _finish({id(tensor): [1, tensor, True]} if id(tensor) in _post_hooks else None)
    order = _topological_order(root)          # each node after the nodes that feed it
    hooked = _hooked_leaves(root) if _post_hooks else None    # id(leaf) -> [edges left, leaf, got a grad]
    rules = (ReusedGradients if gradient_reuse else PlainGradients)(root, seed_is_ours=gradient is None)
    received = {root: _output_slot(root, tensor._out_index, grad, None)}   # node -> its output gradient(s)
    for node in reversed(order):
        out_grads = received.pop(node, None)
        if out_grads is None:                 # no gradient reached it (its consumers returned None)
            continue
        in_grads = _call_backward(node, out_grads, rules)
        for i, t in node._edges:
            g = in_grads[i] if i < len(in_grads) else None
            if g is None:
                continue
            td = t.array
            if g.shape != td.shape or g.dtype != td.dtype:
                g = _conform(node, i, g, td)
            if t.grad_fn is None:
                _accumulate_leaf(t, rules.leaf_gradient(node, g) if t.grad is None else g, hooked)
            else:
                received[t.grad_fn] = rules.add(node, t, g, received.get(t.grad_fn))
        if not retain_graph:
            node._release()
    _finish(hooked)


def _initial_gradient(tensor, gradient):
    """The gradient backward starts from: ones for a one-element tensor, else the given `gradient`."""
    if not tensor.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no grad_fn "
                           "(no input of the computation had requires_grad=True, or it ran under no_grad)")
    data = tensor.array
    if gradient is None:
        if data.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs; this tensor has "
                               f"shape {tuple(data.shape)}: pass gradient= (a tensor of that shape)")
        return backend.full(data.shape, 1, data.dtype, backend.device_of(data))
    grad = gradient.array if isinstance(gradient, _tensor.Tensor) else backend.xp_of(data).asarray(gradient)
    if tuple(grad.shape) != tuple(data.shape):
        raise RuntimeError(f"backward: gradient has shape {tuple(grad.shape)} but the tensor has shape "
                           f"{tuple(data.shape)}")
    return grad if grad.dtype == data.dtype else grad.astype(data.dtype)


def _topological_order(root):
    """The nodes reachable from `root`, each listed after every node it has an edge to (depth-first, with an
    explicit stack, so a 100,000-op chain needs no recursion). A freed node stops the search: its graph was
    already walked by a backward without retain_graph."""
    order, done, stack = [], set(), [(root, False)]
    while stack:
        node, inputs_listed = stack.pop()
        if inputs_listed:
            order.append(node)
        elif node not in done:
            if node._freed:
                raise RuntimeError(f"backward: trying to backward through the graph a second time "
                                   f"({type(node).__name__} already freed its saved arrays); call the first "
                                   "backward with retain_graph=True")
            done.add(node)
            stack.append((node, True))
            for _, t in node._edges:          # (a loop: a generator here cost a third of the walk)
                fn = t.grad_fn
                if fn is not None:
                    stack.append((fn, False))
    return order


def _output_slot(node, index, g, so_far):
    """What `node` has received once `g`, the gradient of its output `index`, is added to `so_far`: one
    array for a one-output node, a list with one entry per output otherwise."""
    if node._nout == 1:
        return g if so_far is None else so_far + g
    slots = so_far or [None] * node._nout
    slots[index] = g if slots[index] is None else slots[index] + g
    return slots


def _call_backward(node, out_grads, rules):
    """Check the node's saved tensors, keep retained gradients, run its backward: a tuple of gradients."""
    if node._saved_versions is not None:
        _check_versions(node)
    if node._nout == 1:
        out_grads = (out_grads,)
    else:                                     # an output that received nothing gets zeros
        xp = backend.xp_of(next(g for g in out_grads if g is not None))
        out_grads = [g if g is not None else xp.zeros(*node._out_meta[k]) for k, g in enumerate(out_grads)]
    if node._retained is not None:
        for k, t in node._retained:
            if t.grad is None:
                t.grad = _tensor.Tensor._make(out_grads[k].copy())
            else:
                t.grad.array = t.grad.array + out_grads[k]
    if node.overwrites_grad:                  # the rules say whether it may write over its gradient
        rules.before_backward(node)
    in_grads = type(node).backward(node, *out_grads)
    return in_grads if type(in_grads) is tuple else (in_grads,)


def _conform(node, i, g, td):
    """Gradient `g` for input `td`, whose shape or dtype it does not have: raise on a shape that differs,
    else cast it to td's dtype."""
    if g.shape != td.shape:
        raise RuntimeError(f"{type(node).__name__}.backward returned a gradient of shape {tuple(g.shape)} "
                           f"for input {i} of shape {tuple(td.shape)}")
    return g if g.dtype == td.dtype else g.astype(td.dtype)


def _accumulate_leaf(t, g, hooked):
    """Add `g` to the leaf's .grad, or make `g` its .grad (the caller copied it when it might be shared)."""
    if t.grad is None:
        t.grad = _tensor.Tensor._make(g)
    else:
        t.grad.array += g
    if hooked is not None and id(t) in hooked:
        _leaf_edge_done(hooked[id(t)])


class PlainGradients:
    """The plain rules for the arrays backward hands on (one object per backward pass). A gradient array may
    be shared -- Add hands one array to both inputs, the caller may hold the seed -- so a leaf keeps a copy
    of its first gradient, and the gradients reaching one output are summed into a new array.

    `gradient_reuse` (below; on by default) swaps in grad_reuse.py's ReusedGradients, which skip those
    copies and allocations where an op declares that its gradients are new arrays (measured there)."""

    def __init__(self, root, seed_is_ours):
        pass

    def before_backward(self, node):
        """Called before the backward of a node with `overwrites_grad`, which may then write over its gradient
        if it sets `node.grad_owned` (the plain rules never let it)."""

    def leaf_gradient(self, node, g):
        """The array a leaf with no .grad yet keeps, given gradient `g` from `node`."""
        return g.copy()

    def add(self, node, t, g, so_far):
        """What t's node has received once `g` (from `node`) is added to `so_far`."""
        return _output_slot(t.grad_fn, t._out_index, g, so_far)


gradient_reuse = True         # the optional gradient-reuse hook (grad_reuse.py); False: the plain rules


def _finish(hooked):
    """The end of a backward pass: hooks of leaves whose other edges delivered nothing, then callbacks."""
    if hooked:
        _flush_post_hooks(hooked)
    if _end_callbacks:
        _run_end_callbacks()


from .grad_reuse import ReusedGradients  # noqa: E402  (it extends PlainGradients, so it comes after it)


def __getattr__(name):
    """Moved names, still found here: `gradcheck`, `GradcheckError` (gradcheck.py, which imports this
    module), `Tensor` (tensor.py), `_wrap(array, requires_grad)` (now `Tensor._make`)."""
    if name in ("gradcheck", "GradcheckError"):
        from . import gradcheck
        return getattr(gradcheck, name)
    if name in ("Tensor", "_wrap"):
        return _tensor.Tensor if name == "Tensor" else lambda out, rg: _tensor.Tensor._make(_as_array(out), rg)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
