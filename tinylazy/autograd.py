"""Reverse-mode automatic differentiation.

An op is a `Function` subclass with `forward` and `backward` side by side, both on raw NumPy/CuPy/meta
arrays. `Function.apply(*args)` unwraps tensors, runs `forward`, wraps the result, and -- when grad mode is
on and some input requires grad -- records the call as a node of the graph (the Function instance is the
node *and* the context that backward reads its saved arrays from).

`backward` walks the graph iteratively (no recursion, so a 100,000-op chain works), summing the gradients
that reach each node before calling its backward once. Every recorded node carries a sequence number, and
the nodes that have received a gradient wait in a heap that yields the newest first, as in PyTorch's engine:
a node's inputs were made before it, so when a node comes out, every node that feeds it a gradient has run.
"""
import heapq
import itertools

import numpy as np

from . import backend
from ._grad_hooks import (_post_hooks, _end_callbacks, _hooked_leaves, _leaf_edge_done,  # noqa: F401
                          _flush_post_hooks, _run_post_hooks, _run_end_callbacks,
                          register_post_accumulate_grad_hook, queue_callback)

Tensor = None          # set by tensor.py: the engine wraps results in this class

# --- grad mode -------------------------------------------------------------------------------------
_grad_enabled = True


def is_grad_enabled():
    return _grad_enabled


class set_grad_enabled:
    """Context manager (and decorator) that turns graph recording on or off."""

    def __init__(self, mode=True):
        global _grad_enabled
        self.prev, self.mode = _grad_enabled, bool(mode)
        _grad_enabled = self.mode        # as in PyTorch, it also works as a plain function call

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev
        return False


class _GradMode:
    mode = True

    def __enter__(self):
        global _grad_enabled
        self.prev, _grad_enabled = _grad_enabled, self.mode
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev
        return False

    def __call__(self, fn):              # used as a decorator
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """`with tl.no_grad():` -- ops inside record no graph (and in-place updates of parameters are allowed)."""
    mode = False


class enable_grad(_GradMode):
    """`with tl.enable_grad():` -- turn recording back on inside a no_grad block."""
    mode = True


# --- Function --------------------------------------------------------------------------------------
class Function:
    """Base class of every differentiable op.

    Subclasses define ``forward(self, *arrays, **kw) -> array (or tuple of arrays)`` and
    ``backward(self, *grads) -> one gradient per positional argument of forward`` (None where an argument
    needs none). They may be written PyTorch's way instead, as ``@staticmethod``s taking ``ctx`` first:
    the engine calls ``cls.forward(ctx, ...)``, which fits both spellings.

    ``fresh_grads = True`` promises that backward returns newly allocated arrays (never the incoming
    gradient itself, never one array twice); the engine may then keep them as ``.grad`` without a copy,
    and add later gradients into them in place.

    ``overwrites_grad = True`` asks the engine whether backward may write over its incoming gradient: the
    engine sets ``self.grad_owned`` before calling backward, True when that array is the engine's alone (it
    came fresh from another node, or is a sum the engine made). Overwriting it spares an allocation.
    """
    fresh_grads = False
    overwrites_grad = False
    differentiable = True      # False: results never require grad (comparisons, argmax, ...)
    _freed = False             # set when backward released the saved arrays (retain_graph=False)
    _seq = -1                  # creation order of a recorded node (set by apply): backward runs newest first
    _retained = None           # [(output index, tensor)] of outputs whose .grad is kept (retain_grad)

    # PyTorch's ctx helpers, for custom Functions written in its style
    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    def mark_non_differentiable(self, *outputs):
        pass

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = cls.__new__(cls)
        raw = list(args)                      # the tensors among args replaced by their arrays
        edges = []                            # (position, tensor) of each input that requires grad
        on_cpu = True
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                d = raw[i] = a.array
                if type(d) is not np.ndarray:
                    on_cpu = False
                if a.requires_grad:
                    edges.append((i, a))
        if not on_cpu:                        # some array is CuPy or meta: they must all be on one device
            _check_one_device(cls, args)
        record = bool(edges) and _grad_enabled and cls.differentiable
        if record:
            needs = [False] * len(args)
            for i, _ in edges:
                needs[i] = True
            ctx.needs_input_grad = tuple(needs)
        else:
            ctx.needs_input_grad = (False,) * len(args)
        out = cls.forward(ctx, *raw, **kwargs)
        if type(out) is tuple:
            outs = tuple(_wrap(o, record) for o in out)
            if record:
                ctx._edges, ctx._nout, ctx._seq = edges, len(outs), next(_sequence)
                ctx._out_meta = [(o.shape, o.dtype) for o in out]
                for k, t in enumerate(outs):
                    t.grad_fn, t._out_index = ctx, k
            return outs
        result = _wrap(out, record)
        if record:
            ctx._edges, ctx._nout, ctx._seq = edges, 1, next(_sequence)
            result.grad_fn = ctx
        return result

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def backward(self, *grads):
        raise NotImplementedError(f"{type(self).__name__} defines no backward")

    def _release(self):
        """Drop what forward saved (the graph is being freed); keep the edges to report a second backward."""
        edges, nout, seq = self._edges, self._nout, self._seq
        self.__dict__.clear()
        self._edges, self._nout, self._seq, self._freed = edges, nout, seq, True


_sequence = itertools.count()          # the sequence numbers of recorded nodes


def _check_one_device(cls, args):
    """Raise unless every tensor among `args` has its array on one device (NumPy arrays are all on cpu)."""
    first = None
    for a in args:
        if isinstance(a, Tensor):
            if first is None:
                first = a
            elif type(a.array) is not type(first.array) or a.device != first.device:
                raise RuntimeError(f"{cls.__name__}: expected all tensors on the same device, "
                                   f"got {first.device} and {a.device}")


def _wrap(out, requires_grad):
    if type(out) is not np.ndarray and isinstance(out, (np.generic, float, int, bool)):
        out = np.asarray(out)
    t = Tensor.__new__(Tensor)
    t.array, t.grad, t.requires_grad, t.grad_fn, t._out_index, t._retains_grad = out, None, requires_grad, None, 0, False
    return t


# --- helpers used by many ops ----------------------------------------------------------------------
def unbroadcast(grad, shape):
    """Sum `grad` back to `shape`: undo NumPy broadcasting (leading dims added, size-1 dims stretched)."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    g = grad.sum(axis=axes, keepdims=True) if axes else grad
    return g.reshape(shape)


# --- the backward pass -----------------------------------------------------------------------------
def backward(tensor, gradient=None, retain_graph=False):
    """Accumulate d(tensor)/d(leaf) * gradient into `.grad` of every leaf that requires grad."""
    if not tensor.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no grad_fn "
                           "(no input of the computation had requires_grad=True, or it ran under no_grad)")
    data = tensor.array
    if gradient is None:
        if data.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs; this tensor has "
                               f"shape {tuple(data.shape)}: pass gradient= (a tensor of that shape)")
        grad = backend.full(data.shape, 1, data.dtype, backend.device_of(data))   # (half np.ones_like's cost)
    else:
        grad = gradient.array if isinstance(gradient, Tensor) else backend.xp_of(data).asarray(gradient)
        if tuple(grad.shape) != tuple(data.shape):
            raise RuntimeError(f"backward: gradient has shape {tuple(grad.shape)} but the tensor has shape "
                               f"{tuple(data.shape)}")
        if grad.dtype != data.dtype:
            grad = grad.astype(data.dtype)
    root = tensor.grad_fn
    if _end_callbacks:
        _end_callbacks.clear()            # what a failed earlier backward left queued
    if root is None:                      # a leaf: its gradient is `grad` itself
        _accumulate_leaf(tensor, grad, fresh=False)
        if _post_hooks:
            _run_post_hooks(tensor)
            _run_end_callbacks()
        return
    hooked = _hooked_leaves(root) if _post_hooks else None    # id(leaf) -> [edges left, leaf, got a grad]
    pending = {root: _seed(root, tensor._out_index, grad)}   # node -> the gradient summed so far
    owned = {root} if gradient is None else set()      # nodes whose pending gradient only the engine holds
    ready = [(-root._seq, root)]          # nodes with a gradient, newest first (a heap on -sequence number)
    while ready:
        node = heapq.heappop(ready)[1]
        grads = pending.pop(node)
        if node._freed:
            raise RuntimeError(f"backward: trying to backward through the graph a second time ({type(node).__name__} "
                               "already freed its saved arrays); call the first backward with retain_graph=True")
        if node._nout == 1:
            if node._retained:
                _set_retained(node._retained[0][1], grads)
            if node.overwrites_grad:
                node.grad_owned = node in owned
            in_grads = type(node).backward(node, grads)
        else:
            in_grads = _backward_multi(node, grads)
        if type(in_grads) is not tuple:
            in_grads = (in_grads,)
        fresh = node.fresh_grads
        for i, t in node._edges:
            g = in_grads[i] if i < len(in_grads) else None
            if g is None:
                continue
            td = t.array
            if g.shape != td.shape or g.dtype != td.dtype:
                g, own = _conform(node, i, g, td), True
            else:
                own = fresh
            fn = t.grad_fn
            if fn is None:
                _accumulate_leaf(t, g, own)
                if hooked is not None and id(t) in hooked:
                    _leaf_edge_done(hooked[id(t)])
            elif fn._nout == 1:
                prev = pending.get(fn)
                if prev is None:
                    pending[fn] = g
                    heapq.heappush(ready, (-fn._seq, fn))
                    if own:
                        owned.add(fn)
                elif fn in owned:
                    prev += g                # ours alone: accumulate in place
                else:
                    pending[fn] = prev + g
                    owned.add(fn)
            else:
                slots = pending.get(fn)
                if slots is None:
                    slots = pending[fn] = [None] * fn._nout
                    heapq.heappush(ready, (-fn._seq, fn))
                k = t._out_index
                slots[k] = g if slots[k] is None else slots[k] + g
        if not retain_graph:
            node._release()
    if hooked:
        _flush_post_hooks(hooked)
    if _end_callbacks:
        _run_end_callbacks()


def _backward_multi(node, grads):
    """Call backward of a node with several outputs: a missing output gradient is zeros."""
    xp = backend.xp_of(next(g for g in grads if g is not None))
    grads = [g if g is not None else xp.zeros(*node._out_meta[k]) for k, g in enumerate(grads)]
    for k, t in node._retained or ():
        _set_retained(t, grads[k])
    return type(node).backward(node, *grads)


def _conform(node, i, g, td):
    """A gradient that differs from its input `td` in shape (an error) or dtype (cast: a fresh array)."""
    if g.shape != td.shape:
        raise RuntimeError(f"{type(node).__name__}.backward returned a gradient of shape {tuple(g.shape)} "
                           f"for input {i} of shape {tuple(td.shape)}")
    return g.astype(td.dtype)


def _accumulate_leaf(t, g, fresh):
    """A leaf keeps a fresh gradient as its .grad (else a copy), or adds it to the one it has."""
    if t.grad is None:
        t.grad = _wrap(g if fresh else g.copy(), False)
    else:
        t.grad.array += g


def _seed(node, index, grad):
    if node._nout == 1:
        return grad
    slots = [None] * node._nout
    slots[index] = grad
    return slots


def _set_retained(t, g):
    if t.grad is None:
        t.grad = _wrap(g.copy(), False)
    else:
        t.grad.array = t.grad.array + g


# --- gradcheck -------------------------------------------------------------------------------------
class GradcheckError(RuntimeError):
    pass


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Compare backward's Jacobian with central finite differences, element by element.

    `inputs` is a tensor or a tuple of them (those with requires_grad are checked; use float64). Returns
    True, or raises `GradcheckError` naming the input, the element, and both values.
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [(n, t) for n, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for n, t in checked:
        if t.dtype != np.float64:
            raise ValueError(f"gradcheck: input {n} is {t.dtype}; finite differences need float64 inputs")

    def run():
        out = fn(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    outs = run()
    analytic = _analytic_jacobians(outs, checked)
    for n, t in checked:
        host = backend.to_device(t.array, "cpu", copy=True)
        for j in range(host.size):
            columns = []
            for sign in (1, -1):
                shifted = host.copy()
                shifted.reshape(-1)[j] += sign * eps
                t.array[...] = backend.to_device(shifted, t.device)
                with no_grad():
                    columns.append([backend.to_device(o.array, "cpu").astype(np.float64).reshape(-1) for o in run()])
            t.array[...] = backend.to_device(host, t.device)
            for k in range(len(outs)):
                numeric = (columns[0][k] - columns[1][k]) / (2 * eps)
                exact = analytic[(n, k)][:, j]
                bad = ~(np.abs(exact - numeric) <= atol + rtol * np.abs(numeric))
                if bad.any():
                    m = int(np.argmax(bad))
                    where = tuple(int(i) for i in np.unravel_index(j, host.shape))
                    raise GradcheckError(
                        f"gradcheck: input {n}, element {where}, output {k} element {m}: analytic "
                        f"{exact[m]!r} != numeric {numeric[m]!r} (atol={atol}, rtol={rtol})")
    return True


def _analytic_jacobians(outs, checked):
    """{(input n, output k): Jacobian (out.size x input.size)}, one backward per output element."""
    jac = {(n, k): np.zeros((o.array.size, t.array.size)) for n, t in checked for k, o in enumerate(outs)}
    saved = [t.grad for _, t in checked]
    for k, o in enumerate(outs):
        if not o.requires_grad:
            continue
        xp = backend.xp_of(o.array)
        for m in range(o.array.size):
            for _, t in checked:
                t.grad = None
            seed = xp.zeros(o.array.size, o.array.dtype)
            seed[m] = 1
            backward(o, seed.reshape(o.array.shape), retain_graph=True)
            for n, t in checked:
                if t.grad is not None:
                    jac[(n, k)][m] = backend.to_device(t.grad.array, "cpu").reshape(-1)
    for (_, t), g in zip(checked, saved):
        t.grad = g
    return jac
