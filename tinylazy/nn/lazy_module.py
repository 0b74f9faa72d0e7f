"""The lazy side of `nn.Module`, kept apart so module.py stays about registration and traversal.

- the *lazy protocol* a layer with sizes to infer overrides (`lazy_sizes`, `infer_sizes`, `parameter_shapes`,
  `sizes_from_shapes`) and the `setup_lazy` call that ends its `__init__` (see layers/linear.py);
- the *lazy extras* every module has: `has_uninitialized_params`, `materialize`, `apply_init`, `summary`,
  `num_parameters`.
The machinery itself is in lazy.py.
"""
from .. import backend
from .. import dtypes as _dt
from ..autograd import no_grad
from . import lazy
from .parameter import is_lazy


class LazyModuleMixin:
    lazy_sizes = ()          # names of the sizes this layer can infer from its first input
    needs_float = True       # a sized layer rejects integer/bool input with a clear message
    _sized = False           # True for classes that define infer_sizes (set by __init_subclass__)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._sized = cls.infer_sizes is not LazyModuleMixin.infer_sizes

    # --- the lazy protocol (overridden by layers with sizes to infer; see lazy.py) --------------------
    def infer_sizes(self, x):
        """{size name: value} implied by input `x`, after validating it (rank, divisibility, ...)."""
        return {}

    def parameter_shapes(self):
        """{parameter/buffer name: shape} for the current sizes (None where a size is unknown)."""
        return {}

    def sizes_from_shapes(self, shapes):
        """The sizes implied by loaded shapes {name: shape}; used by load_state_dict on a lazy layer."""
        return {}

    def setup_lazy(self, device=None, dtype=None, **initializers):
        """End of a sized layer's __init__: remember `weight_init=`/`bias_init=`-style callables, give the
        lazy tensors their partial shapes, and allocate right away when every size is already known."""
        self.__dict__["_initializers"] = {k[:-len("_init")]: fn for k, fn in initializers.items()}
        if device is not None or dtype is not None:
            self._place(backend.device(device) if device is not None else None, _dt.to_dtype(dtype))
        if all(getattr(self, n) is not None for n in self.lazy_sizes):
            pending = lazy.lazy_members(self)
            shapes = self.parameter_shapes()
            for name, t in pending:
                dtype, device = t._lazy_dtype(_dt.get_default_dtype()), t._lazy_device(backend.CPU)
                t.array = backend.empty(tuple(shapes[name]), dtype, device)
            lazy.initialize(self, [t for _, t in pending])
        else:
            lazy.refresh_partial_shapes(self)

    # --- the lazy extras -------------------------------------------------------------------------------
    def has_uninitialized_params(self):
        return any(is_lazy(t) for t in list(self.parameters()) + list(self.buffers()))

    def materialize(self, *example_inputs, device=None, dtype=None):
        """Infer every size from `example_inputs` (tensors, meta tensors or shape tuples) by running the
        forward on the meta device -- shapes only, no activations, no FLOPs -- then allocate the lazy
        parameters on `device` (default: an explicit placement, else cpu) with `dtype` (default: placement,
        else the default dtype, float32). Returns self."""
        if not self.has_uninitialized_params():
            return self
        lazy.trace(self, example_inputs, device, dtype, keep=True)
        return self

    def apply_init(self, inputs, init=None):
        """d2l's method: a dry run on `inputs` (a list of example tensors) to materialize, then
        `self.apply(init)`. The dry run is done in eval mode under no_grad, so it changes no state."""
        if self.has_uninitialized_params():
            modes = [(m, m.training) for m in self.modules()]
            self.eval()
            try:
                with no_grad():
                    self(*inputs)
            finally:
                for m, mode in modes:
                    m.__dict__["training"] = mode
        if init is not None:
            self.apply(init)
        return self

    def summary(self, *example_inputs, dtype=None):
        """A table (layer path, type, output shape, parameter count, bytes) from a shape-only trace on
        `example_inputs`; works on a lazy model and leaves it as it was."""
        from .summary import summary
        return summary(self, example_inputs, dtype)

    def num_parameters(self, trainable_only=False):
        lazy.require_materialized(self, "num_parameters()")
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
