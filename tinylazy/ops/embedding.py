"""embedding(input, weight): a table lookup, out[...] = weight[input[...]] (PyTorch's F.embedding).

Backward scatters the output gradient back into the rows it came from, accumulating for repeated indices
(np.add.at on cpu, its CuPy counterpart on cuda); the padding_idx row gets no gradient.
"""
from .. import _devcheck
from ..autograd import Function
from ..backend import is_meta, xp_of
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand

METHODS = ()
__all__ = ("embedding",)


def _scatter_add(xp, target, index, values):
    """target[index[k]] += values[k] for every k, repeated indices accumulating."""
    add_at = getattr(xp.add, "at", None)     # NumPy; CuPy >= 13
    if add_at is not None:
        add_at(target, index, values)
    else:
        import cupyx                          # older CuPy
        cupyx.scatter_add(target, index, values)


class Embedding(Function):
    """out = weight[idx] (shape idx.shape + (D,)). d weight = scatter-add of g's rows into the rows idx picked;
    scale_grad_by_freq divides each row's gradient by how often its index occurs in idx. Saves idx."""
    _saves = (("idx", 1),)
    fresh_grads = True

    def forward(self, weight, idx, padding_idx, scale_grad_by_freq):
        self.idx, self.w_shape = idx, weight.shape
        self.padding_idx, self.scale = padding_idx, scale_grad_by_freq
        if is_meta(weight) or is_meta(idx):
            return MetaArray(tuple(idx.shape) + tuple(weight.shape[1:]), weight.dtype)
        return xp_of(weight).take(weight, idx, axis=0)

    def backward(self, g):
        if is_meta(g):
            return MetaArray(self.w_shape, g.dtype), None
        xp = xp_of(g)
        flat = self.idx.reshape(-1)
        rows = g.reshape(flat.shape[0], self.w_shape[1])
        gw = xp.zeros(self.w_shape, g.dtype)
        if self.scale:
            counts = xp.bincount(flat, minlength=self.w_shape[0]).astype(g.dtype)
            rows = rows / counts[flat][:, None]
        _scatter_add(xp, gw, flat, rows)
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw, None


def _check_indices(op, idx, n, weight_shape):
    """Raise IndexError for an index outside [0, n). On cuda this check runs on the device and reports at the
    next read of device data (tinylazy._devcheck): reading min/max here would make every step wait for the GPU."""
    if _devcheck.deferred(idx):
        _devcheck.index_range(idx, 0, n, f"{op}: an index is out of range for an embedding table of size {n} "
                                         f"(weight of shape {tuple(weight_shape)}); valid indices are 0..{n - 1}")
        return
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise IndexError(f"{op}: index {bad} is out of range for an embedding table of size {n} "
                         f"(weight of shape {tuple(weight_shape)}); valid indices are 0..{n - 1}")


def _renorm_(weight, idx, max_norm, norm_type):
    """PyTorch's max_norm: rows of `weight` that idx looks up and whose norm exceeds max_norm are rescaled
    in place to norm max_norm (not recorded by autograd)."""
    xp = xp_of(weight)
    rows = xp.unique(idx.reshape(-1))
    norms = xp.linalg.norm(weight[rows], ord=norm_type, axis=1)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(weight.dtype)
    weight[rows] *= scale[:, None]


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """out[...] = weight[input[...]]: input integer indices of any shape, weight (num_embeddings, D); the
    output has shape input.shape + (D,). padding_idx's row gets no gradient; max_norm renormalizes the
    looked-up rows in place first (as PyTorch). An index outside [0, num_embeddings) raises IndexError: at once
    on cpu, at the next read of device data on cuda (checked on the device, see tinylazy._devcheck)."""
    op = "embedding"
    w = weight if type(weight) is Tensor else as_tensor_operand(weight, None, op)
    idx = input if type(input) is Tensor else as_tensor_operand(input, None, op)
    wd, xd = w.array, idx.array
    if wd.ndim != 2:
        raise ShapeError(f"{op}: expected a 2-D weight (num_embeddings, embedding_dim), got shape {tuple(wd.shape)}")
    if xd.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected integer indices (int64 or int32), got {xd.dtype}")
    if sparse:
        raise NotImplementedError(f"{op}: sparse gradients are not supported; use sparse=False")
    n = wd.shape[0]
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise IndexError(f"{op}: padding_idx={padding_idx} is out of range for {n} embeddings "
                             f"(weight of shape {tuple(wd.shape)})")
        padding_idx = int(padding_idx) % n
    if not is_meta(xd) and xd.size:
        _check_indices(op, xd, n, wd.shape)
    if max_norm is not None and not is_meta(wd):
        _renorm_(wd, xd, float(max_norm), norm_type)
        w._vc[0] += 1                         # the weight changed in place (see autograd's version counters)
    return Embedding.apply(w, idx, padding_idx=padding_idx, scale_grad_by_freq=bool(scale_grad_by_freq))
