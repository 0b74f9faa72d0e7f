"""`nn.Module`: the base class of every layer and model (PyTorch's API, plus the lazy extras).

A Module keeps what it owns in three ordered dicts filled by `__setattr__`: ``_parameters`` (Parameters),
``_buffers`` (state that is not trained, e.g. running statistics) and ``_modules`` (child modules). Every
traversal (`named_parameters`, `state_dict`, `to`, ...) walks those dicts. A module reached twice (a
shared layer) is visited once. Every member is also kept in the instance ``__dict__`` (the same object), so
``self.weight`` or ``self.conv1`` is a plain attribute lookup and Module needs no `__getattr__`: a class
that defines one loses the interpreter's attribute caches (CPython 3.11 specializes no attribute access
on it; dropping it saved 4k instructions in a train step of the 3-module MLP). Whatever removes a member
goes through `_drop_child`/`_forget`/`__delattr__`, which keep the two in step.

Calling a module runs its forward pre-hooks, then -- for a layer with sizes to infer -- `lazy.prepare`
(see lazy.py), then `forward`, then its forward hooks. The outermost call keeps a journal so that a failed
first call can be undone.
"""
from collections import OrderedDict

from .. import backend
from .. import dtypes as _dt
from ..tensor import Tensor
from ..tensor_conversions import ToShortcuts
from . import lazy
from .lazy_module import LazyModuleMixin
from .parameter import Parameter, Buffer, LazyTensor, is_lazy


class RemovableHandle:
    """What `register_forward_hook` returns: `handle.remove()` unregisters the hook."""
    _next_id = 0

    def __init__(self, hooks):
        self.hooks, self.id = hooks, RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self):
        self.hooks.pop(self.id, None)


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class Module(LazyModuleMixin, ToShortcuts):
    """The base class of layers and models: subclass it, create parameters and child modules in
    `__init__` (after `super().__init__()`), and compute the output in `forward`."""

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"], d["_buffers"], d["_modules"] = OrderedDict(), OrderedDict(), OrderedDict()
        d["_non_persistent"] = set()
        d["_forward_pre_hooks"], d["_forward_hooks"] = OrderedDict(), OrderedDict()
        d["_path"] = ""

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # --- calling ------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if lazy._state.journal is not None:            # inside another module's call
            return self._call_impl(args, kwargs)
        return lazy.root_call(self, args, kwargs)

    def _call_impl(self, args, kwargs):
        if self._forward_pre_hooks:
            for hook in tuple(self._forward_pre_hooks.values()):
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        if self._sized:
            lazy.prepare(self, args, kwargs)
        out = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in tuple(self._forward_hooks.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    def register_forward_pre_hook(self, hook):
        """`hook(module, args)` runs before forward; it may return new args (a tuple or one value)."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """`hook(module, args, output)` runs after forward; it may return a new output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # --- registration -------------------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        params, modules, buffers = d.get("_parameters"), d.get("_modules"), d.get("_buffers")
        if isinstance(value, (Parameter, Module)) and params is None:
            raise AttributeError(f"cannot assign {type(value).__name__} '{name}' before Module.__init__() call "
                                 "(call super().__init__() first)")
        if isinstance(value, Parameter):
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(nn.Parameter or None expected)")
            params[name] = d[name] = None
        elif isinstance(value, Module):
            self._forget(name, keep="_modules")
            self.add_module(name, value)
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' "
                                "(nn.Module or None expected)")
            modules[name] = d[name] = None
        elif isinstance(value, Buffer):
            self._forget(name, keep="_buffers")
            self.register_buffer(name, value, persistent=value.persistent)
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' (Tensor or None expected)")
            buffers[name] = d[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        """Remove `name` from the instance and from every store but `keep` (where the new value will replace
        the old one in place, keeping its position, as PyTorch does)."""
        d = self.__dict__
        d.pop(name, None)
        for key in ("_parameters", "_buffers", "_modules"):
            if key != keep:
                d[key].pop(name, None)
        d["_non_persistent"].discard(name)

    def _drop_child(self, name):
        """Unregister child module `name` (the containers' del, pop and clear)."""
        del self._modules[name]
        self.__dict__.pop(name, None)

    def _drop_children(self):
        for name in list(self._modules):
            self._drop_child(name)

    def __delattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d.get(key, ()):
                del d[key][name]
                d["_non_persistent"].discard(name)
                d.pop(name, None)
                return
        object.__delattr__(self, name)

    def _check_name(self, name, what):
        if not isinstance(name, str):
            raise TypeError(f"{what} name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{what} name can't contain \".\" or be empty, got {name!r}")
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def register_parameter(self, name, param):
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter '{name}' (nn.Parameter or None expected)")
        if (name in self.__dict__ and name not in self._parameters) or name in self._modules or name in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        self._parameters[name] = self.__dict__[name] = param
        if param is not None:
            param._lazy.path = _join(self._path, name)

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor that is part of the state (saved in state_dict unless persistent=False), not trained."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer '{name}' (Tensor or None expected)")
        if (name in self.__dict__ and name not in self._buffers) or name in self._modules or name in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        self._buffers[name] = self.__dict__[name] = tensor
        (self._non_persistent.discard if persistent else self._non_persistent.add)(name)
        if isinstance(tensor, LazyTensor):
            tensor._lazy.path = _join(self._path, name)

    def add_module(self, name, module):
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if name in self._parameters or name in self._buffers or (name not in self._modules and hasattr(self, name)):
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = self.__dict__[name] = module
        if module is not None:
            module._set_path(_join(self._path, name))

    register_module = add_module

    def _set_path(self, path):
        """Record where each module/tensor of this subtree sits, for error messages ("0.weight")."""
        for prefix, m in self.named_modules(prefix=path):
            m.__dict__["_path"] = prefix
            for d in (m._parameters, m._buffers):
                for n, t in d.items():
                    if isinstance(t, LazyTensor):
                        t._lazy.path = _join(prefix, n)
            lazy.refresh_partial_shapes(m)

    def get_submodule(self, target):
        m = self
        for part in target.split(".") if target else ():
            if part not in m._modules:
                raise AttributeError(f"{type(m).__name__} has no submodule '{part}' (looking for '{target}')")
            m = m._modules[part]
        return m

    # --- traversal ------------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, _join(prefix, name), remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, store, prefix, recurse, remove_duplicate):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mprefix, m in modules:
            for name, t in getattr(m, store).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield _join(mprefix, name), t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # --- state ----------------------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        from .state_dict import state_dict
        return state_dict(self, destination, prefix, keep_vars)

    def load_state_dict(self, state_dict, strict=True):
        from .state_dict import load_state_dict
        return load_state_dict(self, state_dict, strict)

    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode should be a bool, got {mode!r}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def apply(self, fn):
        """Call `fn` on every submodule (children first) and then on this module, as PyTorch does."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.array.fill(0)

    # --- device and dtype -------------------------------------------------------------------------------
    def to(self, *args, **kwargs):
        """`to(device)`, `to(dtype)`, `to(device, dtype)`, `to(tensor)`, or `device=`/`dtype=`. Materialized
        tensors move now (the same Parameter objects); lazy ones record the placement, which then wins
        over the first input's device/dtype."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to(): unexpected keyword arguments {sorted(kwargs)}")
        device, dtype = Tensor._to_args(args, device, dtype)
        dtype = _dt.to_dtype(dtype)
        if dtype is not None and not _dt.is_floating(dtype):
            raise TypeError(f"Module.to() only accepts floating point dtypes, got {dtype}")
        return self._place(backend.device(device) if device is not None else None, dtype)

    def _place(self, device, dtype):
        seen = set()
        for m in self.modules():
            for d in (m._parameters, m._buffers):
                for t in d.values():
                    if t is None or id(t) in seen:
                        continue
                    seen.add(id(t))
                    if is_lazy(t):                          # remembered: it wins over the first input's
                        state = t._lazy
                        if device is not None:
                            state.device = device
                        if dtype is not None and state.fixed_dtype is None:
                            state.dtype = dtype
                        continue
                    cast = dtype if dtype is not None and _dt.is_floating(t.dtype) else None
                    t.array = backend.to_device(t.array, device or t.device, cast)
                    if t.grad is not None:
                        t.grad.array = backend.to_device(t.grad.array, device or t.device, cast)
        return self

    # --- repr ---------------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [line for line in self.extra_repr().split("\n") if line]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        head = type(self).__name__ + "("
        if not self._modules and len(lines) <= 1:
            return head + "".join(lines) + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))
