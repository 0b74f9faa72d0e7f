"""Containers: `Sequential` (a chain), `ModuleList` (a list of modules), `ModuleDict` (a dict of modules).

They hold their members as child modules under the keys "0", "1", ... (or the dict's keys), so their
parameters appear in `parameters()` and `state_dict()` as ``"0.weight"``, ``"2.bias"``, ...
"""
from collections import OrderedDict

from ..module import Module
from .activation import GELU, ReLU, Sigmoid, Tanh
from .conv import Conv2d
from .linear import Linear


def _index(idx, n, what):
    idx = int(idx)
    if not -n <= idx < n:
        raise IndexError(f"{what}: index {idx} is out of range (length {n})")
    return idx % n


# --- fusing a layer with the activation after it ---------------------------------------------------
# Layers whose forward takes `activation=` (their op runs it as an in-place epilogue, see ops/linear.py), and
# the activation modules that can run there, keyed by their forward functions: a subclass that overrides
# forward is run as written.
_TAKES_ACTIVATION = frozenset((Linear.forward, Conv2d.forward))
_EPILOGUES = {ReLU.forward: lambda m: "relu", Sigmoid.forward: lambda m: "sigmoid", Tanh.forward: lambda m: "tanh",
              GELU.forward: lambda m: "gelu" if m.approximate == "none" else "gelu_tanh"}


def fused_activation(layer, module):
    """The activation name under which `module` can run inside `layer`'s op, or None: `layer` is a Linear or
    Conv2d, `module` the ReLU, Sigmoid, Tanh or GELU right after it, and neither has hooks (a hook would
    see the activated output where it expects the layer's)."""
    epilogue = _EPILOGUES.get(type(module).forward)
    if epilogue is None or type(layer).forward not in _TAKES_ACTIVATION:
        return None
    if layer._forward_hooks or layer._forward_pre_hooks or module._forward_hooks or module._forward_pre_hooks:
        return None
    return epilogue(module)


class Sequential(Module):
    """`Sequential(m0, m1, ...)` or `Sequential(OrderedDict(name=module))`: forward feeds each module's
    output to the next. Supports indexing, slicing (a new Sequential of the same modules), len, iteration,
    append, insert, extend and pop.

    A Linear or Conv2d directly followed by a ReLU, Sigmoid, Tanh or GELU runs as one op (see
    `fused_activation`): the same numbers, one graph node fewer, and no array allocated for the activation."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (dict, OrderedDict)):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[_index(idx, len(items), "Sequential")][1]

    def __setitem__(self, idx, module):
        key = list(self._modules)[_index(idx, len(self), "Sequential")]
        self.add_module(key, module)

    def __delitem__(self, idx):
        keys = list(self._modules)
        for key in (keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(keys), "Sequential")]]):
            self._drop_child(key)
        self._renumber()

    def _renumber(self):
        items = list(self._modules.values())
        self._drop_children()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        index = index if index >= 0 else index + len(items)
        items.insert(index, module)
        self._drop_children()
        for i, m in enumerate(items):
            self.add_module(str(i), m)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def pop(self, idx=-1):
        module = self[idx]
        del self[idx]
        return module

    def forward(self, input):
        modules = tuple(self._modules.values())
        i, n = 0, len(modules)
        while i < n:
            module = modules[i]
            act = fused_activation(module, modules[i + 1]) if i + 1 < n else None
            if act is None:
                input = module(input)
                i += 1
            else:
                input = module(input, activation=act)
                i += 2
        return input


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ... (it has no forward of its own)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        values = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(values[idx])
        return values[_index(idx, len(values), "ModuleList")]

    def __setitem__(self, idx, module):
        self.add_module(str(_index(idx, len(self), "ModuleList")), module)

    def __delitem__(self, idx):
        values = list(self._modules.values())
        del values[idx if isinstance(idx, slice) else _index(idx, len(values), "ModuleList")]
        self._drop_children()
        self.extend(values)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        values = list(self._modules.values())
        values.insert(index, module)
        self._drop_children()
        self.extend(values)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward: iterate over it in your module's forward")


class ModuleDict(Module):
    """A dict of modules (insertion order), registered as children under their keys."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        self._drop_child(key)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        for key, m in (modules.items() if hasattr(modules, "items") else modules):
            self[key] = m

    def pop(self, key):
        m = self._modules[key]
        self._drop_child(key)
        return m

    def clear(self):
        self._drop_children()

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward: index it in your module's forward")
