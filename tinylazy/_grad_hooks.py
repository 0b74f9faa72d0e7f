"""Hooks of the backward pass: a leaf's gradient is complete; the backward pass ended.

`DistributedDataParallel` uses both to start each bucket's all-reduce while backward still runs, and to
wait for them all when it ends. `autograd.backward` calls in here only while some hook is registered, so
nothing here costs anything otherwise.

A leaf reached by several paths (a shared layer) receives its gradient edge by edge; its hooks run once,
after the last edge. Before the walk, `_hooked_leaves` counts the graph edges into each hooked leaf;
`_leaf_edge_done` counts them down. A leaf whose remaining edges delivered no gradient (a branch that
gave None) has its hooks run when the walk ends (`_flush_post_hooks`).
"""
import itertools
import weakref

_post_hooks = {}            # id(leaf tensor) -> {handle id: hook(tensor)}
_end_callbacks = []         # run once when the running backward ends (queue_callback)
_handle_ids = itertools.count()


class PostAccumulateHookHandle:
    """What `Tensor.register_post_accumulate_grad_hook` returns: `handle.remove()` unregisters the hook."""

    def __init__(self, key, hid):
        self.key, self.id = key, hid

    def remove(self):
        hooks = _post_hooks.get(self.key)
        if hooks is not None:
            hooks.pop(self.id, None)
            if not hooks:
                del _post_hooks[self.key]


def register_post_accumulate_grad_hook(tensor, hook):
    """Run `hook(tensor)` after a backward pass has accumulated the leaf's whole gradient into `.grad`
    (once per backward, after every path to the leaf has delivered; PyTorch's hook of the same name)."""
    if tensor.grad_fn is not None:
        raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors accumulate a .grad; this "
                           f"tensor is the output of {type(tensor.grad_fn).__name__}")
    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: the hook must be callable, got {type(hook).__name__}")
    key = id(tensor)
    if key not in _post_hooks:
        _post_hooks[key] = {}
        weakref.finalize(tensor, _post_hooks.pop, key, None)    # the id may be reused once it is freed
    hid = next(_handle_ids)
    _post_hooks[key][hid] = hook
    return PostAccumulateHookHandle(key, hid)


def queue_callback(fn):
    """Run `fn()` once, when the backward pass now running ends (PyTorch's engine.queue_callback)."""
    _end_callbacks.append(fn)


def _hooked_leaves(root):
    """{id(leaf): [number of graph edges into it, leaf, received a gradient]} for the hooked leaves."""
    counts, seen, stack = {}, {root}, [root]
    while stack:
        for _, t in stack.pop()._edges:
            fn = t.grad_fn
            if fn is None:
                if id(t) in _post_hooks:
                    entry = counts.setdefault(id(t), [0, t, False])
                    entry[0] += 1
            elif fn not in seen:
                seen.add(fn)
                stack.append(fn)
    return counts


def _leaf_edge_done(entry):
    entry[0] -= 1
    entry[2] = True
    if entry[0] == 0:
        _run_post_hooks(entry[1])


def _flush_post_hooks(hooked):
    """Leaves that got a gradient but whose other edges delivered none: their gradient is complete now."""
    for entry in hooked.values():
        if entry[2] and entry[0] > 0:
            entry[0] = 0
            _run_post_hooks(entry[1])


def _run_post_hooks(t):
    for hook in tuple(_post_hooks.get(id(t), {}).values()):
        hook(t)


def _run_end_callbacks():
    while _end_callbacks:
        _end_callbacks.pop(0)()
