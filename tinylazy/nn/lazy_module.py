"""The lazy extras every `nn.Module` has, kept apart so module.py stays about registration and traversal:
`has_uninitialized_params`, `materialize`, `apply_init`, `summary`, `num_parameters`.

The lazy protocol a layer with sizes to infer overrides (`lazy_sizes`, `infer_sizes`, `parameter_shapes`,
`sizes_from_shapes`, `setup_lazy`) and the machinery itself are in lazy.py.
"""
from ..autograd import no_grad
from . import lazy
from .parameter import is_lazy


class LazyModuleMixin(lazy.LazyProtocol):
    """What every module has for laziness: the lazy protocol's defaults (lazy.py) and the lazy extras."""

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
