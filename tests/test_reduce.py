"""Reductions: forward and gradients equal PyTorch's, float64 gradchecks, dims/keepdim/dtypes, ties,
edge shapes, non-contiguous inputs, errors, and the meta device."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinylazy as tl
from tinylazy.meta import MetaArray
from helpers import assert_close, check_op, host, noncontiguous, rand, torch

th = torch()

DIMS = [None, 0, -1, 1, (0, 2), (-1, 0), (), (0, 1, 2)]


def nc_leaf(a, device):
    """A leaf tensor whose data really is a non-contiguous view (tl.tensor would copy it)."""
    wide = tl.zeros(*a.shape[:-1], 2 * a.shape[-1], dtype=a.dtype, device=device).array
    view = wide[..., ::2]
    view[...] = tl.tensor(a, device=device).array
    return tl.Tensor(view).requires_grad_()


def check_noncontiguous(ours, theirs, a, device, rtol=1e-9):
    x = nc_leaf(a, device)
    assert not x.array.flags.c_contiguous
    out, ref = ours(x), theirs(pt := th.from_numpy(noncontiguous(a)).requires_grad_())
    out = out[0] if isinstance(out, tuple) else out
    ref = ref[0] if isinstance(ref, tuple) else ref
    assert_close(out, ref, rtol=rtol, what="forward")
    w = rand(ref.shape, seed=7)
    out.backward(tl.tensor(w, device=device))
    ref.backward(th.from_numpy(w))
    assert_close(x.grad, pt.grad, rtol=rtol, what="grad")


# --- sum / mean -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_sum_mean_dims(device, name, dim, keepdim):
    x = rand((2, 3, 4), seed=1)
    kw = {} if dim is None else {"dim": dim}
    check_op(lambda t: getattr(tl, name)(t, keepdim=keepdim, **kw),
             lambda t: getattr(th, name)(t, dim=dim, keepdim=keepdim), x, device=device)


@pytest.mark.parametrize("shape,dim", [((), None), ((), 0), ((), -1), ((1,), 0), ((0,), 0), ((0, 3), 0),
                                       ((0, 3), 1), ((3, 1), 1), ((0, 3), None)], ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "prod", "logsumexp", "cumsum"])
def test_reductions_edge_shapes(device, name, shape, dim):
    if name in ("logsumexp", "cumsum") and dim is None:
        pytest.skip("torch requires dim")
    x = rand(shape, seed=2, low=0.5, high=1.5)
    kw = {} if dim is None else {"dim": dim}
    check_op(lambda t: getattr(tl, name)(t, **kw), lambda t: getattr(th, name)(t, **kw), x, device=device)


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "prod", "logsumexp", "var", "std", "norm"])
def test_reductions_noncontiguous(device, name):
    a = rand((3, 4), seed=3)
    ours = getattr(tl, name)
    theirs = getattr(th, name)
    check_noncontiguous(lambda t: ours(t, 1), lambda t: theirs(t, 1), a, device)
    check_noncontiguous(lambda t: ours(t.T, 1), lambda t: theirs(t.T, 1), a, device)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int32, np.int64, np.float32, np.float64])
def test_sum_prod_cumsum_dtypes_follow_torch(device, dtype):
    x = (rand((2, 3), seed=4, low=0, high=3)).astype(dtype)
    for name in ("sum", "prod"):
        check_op(getattr(tl, name), getattr(th, name), x, device=device, grad=False, rtol=1e-6)
        check_op(lambda t: getattr(tl, name)(t, 1), lambda t: getattr(th, name)(t, 1), x, device=device,
                 grad=False, rtol=1e-6)
    check_op(lambda t: tl.cumsum(t, 1), lambda t: th.cumsum(t, 1), x, device=device, grad=False, rtol=1e-6)


def test_sum_dtype_argument_and_float32(device):
    x = rand((3, 5), np.float32, seed=5)
    out = tl.sum(tl.tensor(x, device=device), 1, dtype=tl.float64)
    assert out.dtype == tl.float64
    check_op(lambda t: t.sum(0), lambda t: t.sum(0), x, device=device, rtol=1e-6)
    check_op(lambda t: t.mean(), lambda t: t.mean(), x, device=device, rtol=1e-6)


def test_mean_of_integers_raises_like_torch(device):
    x = tl.tensor([1, 2, 3], device=device)
    with pytest.raises(RuntimeError, match=r"mean: expects a floating-point tensor, got int64.*\.float\(\)"):
        tl.mean(x)
    assert tl.mean(x, dtype=tl.float64).item() == 2.0
    for name in ("var", "std", "norm"):
        with pytest.raises(RuntimeError, match=f"{name}: expects a floating-point tensor"):
            getattr(tl, name)(x)


# --- max / min / amax / amin / argmax / argmin ---------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1, -3])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_with_dim_return_values_and_indices(device, name, dim, keepdim):
    x = rand((3, 4, 5), seed=6)
    out = check_op(lambda t: getattr(tl, name)(t, dim, keepdim), lambda t: getattr(th, name)(t, dim, keepdim),
                   x, device=device)
    assert out.values is out[0] and out.indices.dtype == tl.int64 and not out.indices.requires_grad
    assert_close(out.indices, getattr(th, name)(th.from_numpy(x), dim, keepdim).indices, what="indices")
    vals, idx = getattr(tl.tensor(x, device=device), name)(dim=dim, keepdim=keepdim)
    assert_close(vals, out.values)


@pytest.mark.parametrize("dim", [None, 0, (0, 1), -1, ()], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["amax", "amin"])
def test_amax_amin(device, name, dim, keepdim):
    x = rand((3, 4, 2), seed=7)
    kw = {} if dim is None else {"dim": dim}
    check_op(lambda t: getattr(tl, name)(t, keepdim=keepdim, **kw),
             lambda t: getattr(th, name)(t, keepdim=keepdim, **kw), x, device=device)


def test_full_max_min(device):
    x = rand((3, 4), seed=8)
    check_op(tl.max, th.max, x, device=device)
    check_op(lambda t: t.min(), lambda t: t.min(), x, device=device)


TIES = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, -1.0], [0.5, -4.0, 0.5, -4.0]])


@pytest.mark.parametrize("fn", [
    lambda m, t: m.amax(t, 1), lambda m, t: m.amin(t, 1), lambda m, t: m.amax(t), lambda m, t: m.max(t),
    lambda m, t: m.min(t), lambda m, t: m.max(t, 1), lambda m, t: m.min(t, 0), lambda m, t: m.amax(t, (0, 1)),
    lambda m, t: m.norm(t, math.inf, 1), lambda m, t: m.norm(t, -math.inf, 1)], ids=[
    "amax1", "amin1", "amax", "max", "min", "max1", "min0", "amax01", "norminf", "normneginf"])
def test_tie_gradients_follow_torch(device, fn):
    """amax/amin/max()/min() share among ties evenly; max/min with dim give all to the returned index."""
    check_op(lambda t: fn(tl, t), lambda t: fn(th, t), TIES, device=device, gradcheck=False)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (None, True), (0, False), (1, True), (-1, False)])
def test_argmax_argmin(device, name, dim, keepdim):
    x = rand((3, 4), seed=9)
    x[1, 2] = x[1, 0] = 5.0                        # a tie: the first index wins, as in PyTorch
    out = check_op(lambda t: getattr(tl, name)(t, dim, keepdim), lambda t: getattr(th, name)(t, dim, keepdim),
                   x, device=device, grad=False)
    assert out.dtype == tl.int64 and not out.requires_grad


def test_tensor_second_argument_is_elementwise(device):
    a, b = rand((2, 3), seed=10), rand((2, 3), seed=11)
    check_op(tl.max, th.max, a, b, device=device)
    check_op(lambda x, y: x.min(y), lambda x, y: x.min(y), a, b, device=device)


def test_max_of_0d_with_dim(device):
    out = tl.max(tl.tensor(3.0, device=device), 0)
    assert out.values.shape == () and out.indices.item() == 0


def test_any_all(device):
    x = np.array([[True, False], [True, True]])
    for name in ("any", "all"):
        check_op(getattr(tl, name), getattr(th, name), x, device=device, grad=False)
        check_op(lambda t: getattr(tl, name)(t, 1), lambda t: getattr(th, name)(t, 1), x, device=device, grad=False)


# --- var / std / prod / logsumexp / norm / cumsum -------------------------------------------------
@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("correction", [None, 0, 2])
def test_var_std(device, name, dim, keepdim, correction):
    x = rand((3, 2, 4), seed=12)
    kw = {} if correction is None else {"correction": correction}
    check_op(lambda t: getattr(tl, name)(t, dim, keepdim=keepdim, **kw),
             lambda t: getattr(th, name)(t, dim, keepdim=keepdim, **kw), x, device=device)


def test_var_std_legacy_unbiased(device):
    x = rand((4, 3), seed=13)
    check_op(lambda t: t.var(False), lambda t: t.var(False), x, device=device)
    check_op(lambda t: t.std(1, False, True), lambda t: t.std(1, False, True), x, device=device)
    check_op(lambda t: tl.std(t, unbiased=True), lambda t: th.std(t, unbiased=True), x, device=device)


def test_std_of_constant_has_zero_gradient(device):
    check_op(lambda t: t.std(1), lambda t: t.std(1), np.ones((2, 3)), device=device, gradcheck=False)


@pytest.mark.parametrize("dim", [None, 0, 1, -1])
@pytest.mark.parametrize("zeros", [0, 1, 2])
def test_prod_with_zeros(device, dim, zeros):
    x = rand((3, 4), seed=14, low=0.5, high=1.5)
    x[0, :zeros] = 0.0
    x[:zeros, 1] = 0.0
    kw = {} if dim is None else {"dim": dim}
    check_op(lambda t: tl.prod(t, **kw), lambda t: th.prod(t, **kw), x, device=device)
    check_op(lambda t: t.prod(1, keepdim=True), lambda t: t.prod(1, keepdim=True), x, device=device)


@pytest.mark.parametrize("dim", [0, 1, -1, (0, 1)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp(device, dim, keepdim):
    check_op(lambda t: tl.logsumexp(t, dim, keepdim), lambda t: th.logsumexp(t, dim, keepdim),
             rand((3, 4), seed=15), device=device)


def test_logsumexp_is_stable_and_handles_infinities(device):
    x = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 1.0]])
    check_op(lambda t: tl.logsumexp(t, 1), lambda t: th.logsumexp(t, 1), x, device=device, grad=False)
    check_op(lambda t: tl.logsumexp(t[[0, 2]], 1), lambda t: th.logsumexp(t[[0, 2]], 1), x, device=device,
             gradcheck=False)
    ints = tl.logsumexp(tl.tensor([1, 2], device=device), 0)
    assert ints.dtype == tl.float32


@pytest.mark.parametrize("p", [2, "fro", 1, math.inf, -math.inf, 3, 0.5, 0])
@pytest.mark.parametrize("dim", [None, 1, (0, 1), -1], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_norm(device, p, dim, keepdim):
    x = rand((3, 4), seed=16)
    if p == "fro" and dim == 1:
        dim = (1,)
    check_op(lambda t: tl.norm(t, p, dim, keepdim), lambda t: th.norm(t, p, dim, keepdim), x, device=device)


@pytest.mark.parametrize("shape,dim", [((1, 1, 1), (0, 1, 2)), ((2, 3, 2), (0, 2, 1)), ((2, 3, 2, 2), (1, 3, 0))])
def test_norm_over_three_or_more_dims_is_the_vector_norm(device, shape, dim):
    """(The case hypothesis found: torch.norm refuses 3 dims, torch.linalg.vector_norm is the oracle.)"""
    check_op(lambda t: tl.norm(t, dim=dim), lambda t: th.linalg.vector_norm(t, dim=dim), rand(shape, seed=23),
             device=device)


def test_norm_default_and_zero_vector(device):
    check_op(lambda t: t.norm(), lambda t: t.norm(), rand((5,), seed=17), device=device)
    check_op(lambda t: t.norm(dim=1), lambda t: t.norm(dim=1), np.array([[0.0, 0.0], [3.0, 4.0]]),
             device=device, gradcheck=False)
    check_op(lambda t: t.norm(3, 1), lambda t: t.norm(3, 1), np.array([[0.0, 0.0], [3.0, -4.0]]),
             device=device, gradcheck=False)
    with pytest.raises(NotImplementedError, match="nuc"):
        tl.norm(tl.ones(2, 2), "nuc")


@pytest.mark.parametrize("dim", [0, 1, -1, -2])
def test_cumsum(device, dim):
    check_op(lambda t: tl.cumsum(t, dim), lambda t: th.cumsum(t, dim), rand((3, 4), seed=18), device=device)
    check_op(lambda t: t.cumsum(dim=dim), lambda t: t.cumsum(dim=dim), rand((3, 4), seed=19), device=device)


def test_numpy_style_aliases_axis_keepdims(device):
    """d2l writes A.sum(axis=1, keepdims=True), torch.cat(..., axis=1): PyTorch accepts NumPy's names."""
    x = rand((2, 3), seed=22)
    for name in ("sum", "mean", "amax", "amin", "prod", "logsumexp", "var", "std"):
        check_op(lambda t: getattr(t, name)(axis=1, keepdims=True), lambda t: getattr(t, name)(axis=1, keepdims=True),
                 x, device=device)
    check_op(lambda t: t.max(axis=0), lambda t: t.max(axis=0), x, device=device)
    check_op(lambda t: t.cumsum(axis=0), lambda t: t.cumsum(axis=0), x, device=device)
    check_op(lambda t: t.argmin(axis=1), lambda t: t.argmin(axis=1), x, device=device, grad=False)
    check_op(lambda t: (t > 0).any(axis=1), lambda t: (t > 0).any(axis=1), x, device=device, grad=False)


# --- hypothesis: any shape, any dims --------------------------------------------------------------
@st.composite
def shape_and_dims(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=4)))
    nd = len(shape)
    if nd == 0:
        return shape, draw(st.sampled_from([None, 0, -1]))
    dims = draw(st.lists(st.integers(-nd, nd - 1), min_size=0, max_size=nd, unique_by=lambda d: d % nd))
    return shape, draw(st.sampled_from([None, tuple(dims)] + ([dims[0]] if dims else [])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=shape_and_dims(), keepdim=st.booleans(),
       name=st.sampled_from(["sum", "mean", "amax", "amin", "logsumexp", "norm", "var"]))
def test_reduction_shapes_hypothesis(device, case, keepdim, name):
    shape, dim = case
    if name in ("logsumexp", "var") and dim in (None, ()):     # torch mishandles dim=() for these
        dim = tuple(range(len(shape))) if name == "logsumexp" else None
    x = rand(shape, seed=20)
    kw = {} if dim is None else {"dim": dim}
    kw_th = {"dim": () if dim is None and name in ("amax", "amin") else dim}
    if name == "var":
        ours, theirs = (lambda t: tl.var(t, keepdim=keepdim, correction=0, **kw),
                        lambda t: th.var(t, keepdim=keepdim, correction=0, **kw_th))
    else:
        ours = lambda t: getattr(tl, name)(t, keepdim=keepdim, **kw)        # noqa: E731
        # tl.norm's default is the 2-norm over any dims: torch.norm treats 2 dims as a matrix ('fro', the
        # same number) and rejects 3 or more, so the oracle is vector_norm
        torch_fn = th.linalg.vector_norm if name == "norm" else getattr(th, name)
        theirs = lambda t: torch_fn(t, keepdim=keepdim, **kw_th)            # noqa: E731
    check_op(ours, theirs, x, device=device, gradcheck=x.size <= 12)


# --- errors ---------------------------------------------------------------------------------------
def test_bad_dims_name_the_valid_range(device):
    x = tl.ones(2, 3, device=device)
    for fn in (lambda: x.sum(2), lambda: x.mean(-3), lambda: x.max(5), lambda: x.amax((0, 2)),
               lambda: x.argmax(2), lambda: x.var(2), lambda: x.cumsum(2), lambda: tl.logsumexp(x, 2)):
        with pytest.raises(IndexError, match=r"dimension -?\d is out of range.*\[-2, 1\]"):
            fn()
    with pytest.raises(RuntimeError, match="more than once"):
        x.sum((0, -2))


def test_empty_reductions_raise_like_torch(device):
    e = tl.ones(0, 3, device=device)
    with pytest.raises(RuntimeError, match=r"max: cannot reduce an empty tensor \(shape \(0, 3\)\)"):
        e.max()
    with pytest.raises(IndexError, match="amax: expected reduction dim 0 to have non-zero size"):
        e.amax(0)
    with pytest.raises(IndexError, match="argmax"):
        e.argmax()
    assert e.amax(1).shape == (0,)
    assert e.max(1).values.shape == (0,)


# --- meta device ----------------------------------------------------------------------------------
META_CASES = [
    (lambda x: x.sum(), (), tl.float32),
    (lambda x: x.sum((0, 2), keepdim=True), (1, 3, 1), tl.float32),
    (lambda x: x.mean(-1), (2, 3), tl.float32),
    (lambda x: x.amax(1), (2, 4), tl.float32),
    (lambda x: x.max(), (), tl.float32),
    (lambda x: x.max(1).values, (2, 4), tl.float32),
    (lambda x: x.min(1, keepdim=True).indices, (2, 1, 4), tl.int64),
    (lambda x: x.argmax(), (), tl.int64),
    (lambda x: x.argmin(2, keepdim=True), (2, 3, 1), tl.int64),
    (lambda x: x.var(1), (2, 4), tl.float32),
    (lambda x: x.std(), (), tl.float32),
    (lambda x: x.prod(0), (3, 4), tl.float32),
    (lambda x: tl.logsumexp(x, -1), (2, 3), tl.float32),
    (lambda x: x.norm(dim=(1, 2)), (2,), tl.float32),
    (lambda x: x.norm(1, 0), (3, 4), tl.float32),
    (lambda x: x.cumsum(1), (2, 3, 4), tl.float32),
    (lambda x: (x > 0).sum(0), (3, 4), tl.int64),
    (lambda x: (x > 0).any(), (), tl.bool),
]


@pytest.mark.parametrize("k", range(len(META_CASES)))
def test_meta_device(k):
    fn, shape, dtype = META_CASES[k]
    out = fn(tl.empty(2, 3, 4, device="meta"))
    assert out.shape == shape and out.dtype == dtype
    assert isinstance(out.array, MetaArray)


def test_meta_backward_allocates_nothing():
    x = tl.empty(2, 3, device="meta", requires_grad=True)
    for fn in (lambda t: t.sum(), lambda t: t.mean(1).sum(), lambda t: t.amax(0).sum(),
               lambda t: t.max(1).values.sum(), lambda t: t.var().sum(), lambda t: t.prod(1).sum()):
        x.grad = None
        fn(x).backward()
        assert isinstance(x.grad.array, MetaArray) and x.grad.shape == (2, 3)


def test_float32_results_stay_float32(device):
    x = tl.tensor(rand((3, 4), np.float32, seed=21), device=device)
    for fn in (tl.sum, tl.mean, tl.amax, tl.var, tl.std, tl.prod, tl.norm, lambda t: tl.logsumexp(t, 1),
               lambda t: t.max(1).values, lambda t: t.cumsum(0)):
        assert fn(x).dtype == tl.float32
    assert host(tl.sum(x)).dtype == np.float32
