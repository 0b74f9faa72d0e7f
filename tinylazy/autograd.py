"""Reverse-mode automatic differentiation.

An op is a `Function` subclass with `forward` and `backward` side by side, both on raw NumPy/CuPy/meta
arrays. `Function.apply(*args)` unwraps tensors, runs `forward`, wraps the result, and -- when grad mode is
on and some input requires grad -- records the call as a node of the graph (the Function instance is the
node *and* the context that backward reads its saved arrays from).

`backward` walks the graph iteratively (no recursion, so a 100,000-op chain works), summing the gradients
that reach each node before calling its backward once. Every recorded node carries a sequence number, and
the nodes that have received a gradient wait in a heap that yields the newest first, as in PyTorch's engine:
a node's inputs were made before it, so when a node comes out, every node that feeds it a gradient has run.
A backward without retain_graph frees each node it ran through: what forward saved, and the edges to the
input tensors, so that a loss kept after backward holds no activations.

Saved tensors are guarded by version counters (below): changing one in place between forward and backward
is an error that names the op, never a silently wrong gradient. Grad mode (no_grad, ...) is per thread and
lives in grad_mode.py.
"""
import heapq
import itertools

import numpy as np

from . import backend
from ._grad_hooks import (_post_hooks, _end_callbacks, _hooked_leaves, _leaf_edge_done,  # noqa: F401
                          _flush_post_hooks, _run_post_hooks, _run_end_callbacks,
                          register_post_accumulate_grad_hook, queue_callback)
from .grad_mode import _state, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401

Tensor = None          # set by tensor.py: the engine wraps results in this class


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

    ``_saves`` declares what forward keeps for backward, for the version check: ((attribute, position),
    ...), each attribute holding (a view of) the array of input `position` (or of output -1-position) when
    forward set it to anything but None. Left None, the engine finds out by looking through the node's
    attributes after forward (slower, but right for any Function, custom ones included).

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
    _view = False              # True: the output may be a view of input 0 (reshape, permute, basic index, ...)
    _saved_versions = None     # [(counter, version, array, input i or output -1-k)] of what forward kept
    _saves = None              # what forward keeps, declared: ((attribute, input i or output -1-k), ...);
                               # None: found by looking through the node's attributes (_watch_saved)

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
        record = bool(edges) and _state.grad_enabled and cls.differentiable
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
                if cls._saves is None:
                    _watch_saved(ctx, args, outs)
                elif cls._saves:
                    _watch_declared(ctx, cls._saves, args, outs)
                ctx._edges, ctx._nout, ctx._seq = edges, len(outs), next(_sequence)
                ctx._out_meta = [(o.shape, o.dtype) for o in out]
                for k, t in enumerate(outs):
                    t.grad_fn, t._out_index = ctx, k
            return outs
        result = _wrap(out, record)
        if cls._view:
            _share_counter_if_view(result, args[0])
        if record:
            saves = cls._saves
            if saves is None:
                _watch_saved(ctx, args, (result,))
            elif saves:
                _watch_declared(ctx, saves, args, (result,))
            ctx._edges, ctx._nout, ctx._seq = edges, 1, next(_sequence)
            result.grad_fn = ctx
        return result

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def backward(self, *grads):
        raise NotImplementedError(f"{type(self).__name__} defines no backward")

    def _release(self):
        """Free the node after backward ran through it without retain_graph: drop what forward saved and the
        edges (the input tensors, whose arrays would otherwise stay alive as long as the loss does); keep
        what reports a second backward through it (which stops at this node, before its edges)."""
        nout, seq = self._nout, self._seq
        self.__dict__.clear()
        self._nout, self._seq, self._freed = nout, seq, True


_sequence = itertools.count()          # the sequence numbers of recorded nodes


# --- version counters --------------------------------------------------------------------------------
# Every tensor has a version counter, `tensor._vc`: a one-element list that every in-place change of its
# values bumps (+=, copy_, zero_, fill_, setitem, the optimizers' steps, ...; `tensor._version` reads it).
# Views (reshape, permute, basic indexing, expand, detach, ...) share their base's list, so a change through
# any of them counts for all; `.data` gets a fresh one (PyTorch's escape hatch, which autograd does not
# watch). When a node is recorded, it notes the version of each input or output tensor whose memory its
# forward kept for backward; backward compares before using them, so a saved tensor changed in place in
# between is an error, never a silently wrong gradient.

def _storage(a):
    """The array that owns the memory `a` looks at (`a` itself when it is no view)."""
    base = getattr(a, "base", None)
    while base is not None:
        a, base = base, getattr(base, "base", None)
    return a


def _share_counter_if_view(result, source):
    """Give `result` the version counter of `source` when its array is a view of source's memory."""
    if _storage(result.array) is _storage(source.array):
        result._vc = source._vc


def _watch_saved(ctx, args, outs):
    """Note on `ctx` the version of every input or output tensor whose memory forward kept on ctx (an
    attribute that is the array, a view of it, or such arrays in a tuple or list): `_saved_versions`.
    (Runs for every recorded node, so the NumPy case is written out inline.)"""
    cp = backend._cupy
    device_array = cp.ndarray if cp else None
    kept = set()                          # ids of the memory owners of the arrays on ctx
    for v in ctx.__dict__.values():
        tv = type(v)
        if tv is tuple or tv is list:
            for u in v:
                tu = type(u)
                if tu is np.ndarray or tu is device_array:
                    kept.add(id(u if u.base is None else _storage(u)))
        elif tv is np.ndarray or tv is device_array:
            kept.add(id(v if v.base is None else _storage(v)))
    if not kept:
        return
    saved = []
    for i, t in enumerate(args):
        if isinstance(t, Tensor):
            a = t.array
            if id(a if getattr(a, "base", None) is None else _storage(a)) in kept:
                saved.append((t._vc, t._vc[0], a, i))
    for k, t in enumerate(outs):
        a = t.array
        if id(a if getattr(a, "base", None) is None else _storage(a)) in kept:
            saved.append((t._vc, t._vc[0], a, -1 - k))
    if saved:
        ctx._saved_versions = saved


def _watch_declared(ctx, saves, args, outs):
    """_watch_saved for a Function that declares `_saves`, ((attribute, position), ...): the attribute, when
    forward set it to something other than None, holds (a view of) input `position`'s array, or output
    -1-position's. Much cheaper than looking; tests check each declaration against _watch_saved."""
    d = ctx.__dict__
    saved = []
    for name, pos in saves:
        if d.get(name) is not None:
            t = args[pos] if pos >= 0 else outs[-1 - pos]
            if isinstance(t, Tensor):     # (a Python number operand has no version)
                vc = t._vc
                saved.append((vc, vc[0], t.array, pos))
    if saved:
        ctx._saved_versions = saved


def _check_versions(node):
    """Raise if a tensor that `node` saved for backward was changed in place since (PyTorch's message)."""
    for vc, version, array, where in node._saved_versions:
        if vc[0] != version:
            what = f"input {where}" if where >= 0 else f"output {-1 - where}"
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: the tensor of shape {tuple(array.shape)} saved by {type(node).__name__} (its {what}) "
                f"is at version {vc[0]}; expected version {version} instead. Hint: change it out of place "
                f"(x = x + 1, not x += 1), clone it before the in-place change, or change it after backward.")


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
    t._vc = [0]
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
        if node._saved_versions is not None:
            _check_versions(node)
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
