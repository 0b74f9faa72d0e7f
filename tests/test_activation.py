"""gelu, softmax, log_softmax, dropout: forward and gradients equal PyTorch's, float64 gradchecks, edge
shapes, meta tensors, and dropout's statistics and reproducibility."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy.meta import MetaArray
from tinylazy import _xpmath
from helpers import check_op, host, noncontiguous, rand, torch

th = torch()
TF = th.nn.functional

SHAPES = [(), (1,), (5,), (2, 3), (4, 1, 3), (0, 3), (2, 0)]


# --- Phi, the normal cdf behind gelu (erf and erfc themselves: tests/test_kernels.py) ------------------
def _phi_ref(v):
    """Phi(v) = erfc(-v/sqrt2) / 2 from math.erfc, in float64."""
    return 0.5 * math.erfc(-v / math.sqrt(2))


def _assert_tail_close(ours, ref, x):
    """Relative error within 4 (1 + x^2) float64 ulps: rounding -x/sqrt2 costs one ulp of the argument, which
    exp(-x^2/2) magnifies x^2 times (Phi's own condition number), in ours and in the reference alike."""
    ours, ref, x = (np.asarray(a, dtype=np.float64) for a in (ours, ref, x))
    assert np.all(np.abs(ours - ref) <= 4 * np.finfo(np.float64).eps * (1 + x * x) * np.abs(ref))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normal_cdf_is_accurate_in_both_tails(dtype):
    """Phi through erfc keeps its relative precision far out in the negative tail (Phi(-37) = 5.7e-300),
    where 0.5 (1 + erf(x/sqrt2)) is 0; in float32 it is float64's value rounded once."""
    x = np.concatenate([np.linspace(-37, 9, 9201), [0.0, -1e-300, 1e-300, np.inf, -np.inf]]).astype(dtype)
    ref = np.array([_phi_ref(v) for v in x.astype(np.float64)])
    out = _xpmath.normal_cdf(x)
    assert out.dtype == dtype and out[-2] == 1 and out[-1] == 0
    if dtype == np.float64:
        _assert_tail_close(out[:-2], ref[:-2], x[:-2])
    else:
        tiny = ref < np.finfo(np.float32).tiny                  # float32's subnormals: absolute precision
        np.testing.assert_allclose(out[~tiny], ref[~tiny], rtol=6e-8, atol=0)
        np.testing.assert_allclose(out[tiny], ref[tiny], rtol=0, atol=1e-45)
    assert np.isnan(_xpmath.normal_cdf(np.array([np.nan], dtype)))[0]


def test_gelu_far_negative_tail_keeps_relative_precision(device):
    """gelu(x) = x Phi(x) and gelu'(x) = Phi(x) + x phi(x) keep their relative precision down to x = -37
    in float64. (PyTorch's cpu gelu computes 0.5 x (1 + erf(x/sqrt2)), which is -0.0 already at x = -10.)"""
    xs = np.array([-10.0, -15.0, -20.0, -30.0, -37.0])
    x = tl.tensor(xs, device=device, requires_grad=True)
    y = F.gelu(x)
    y.backward(tl.ones(len(xs), dtype=tl.float64, device=device))
    cdf = np.array([_phi_ref(v) for v in xs])
    pdf = np.exp(-xs * xs / 2) / math.sqrt(2 * math.pi)
    _assert_tail_close(host(y), xs * cdf, xs)
    _assert_tail_close(host(x.grad), cdf + xs * pdf, xs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_is_the_cuda_reference_bit_for_bit(approximate, dtype):
    """F.gelu on cpu is tinylazy.cuda.gelu_fwd / gelu_bwd: one implementation (the one that
    linear(..., activation="gelu") fuses), not a lookalike that differs in the last bits."""
    x = rand((7, 9), dtype, seed=21, low=-12, high=6)
    g = rand((7, 9), dtype, seed=22)
    t = tl.tensor(x, requires_grad=True)
    y = F.gelu(t, approximate=approximate)
    y.backward(tl.tensor(g))
    np.testing.assert_array_equal(host(y), tl.cuda.gelu_fwd(x, approximate))
    np.testing.assert_array_equal(host(t.grad), tl.cuda.gelu_bwd(g, x, approximate))


# --- gelu ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gelu_matches_torch(device, approximate, shape):
    x = rand(shape, low=-4, high=4, seed=1)
    check_op(lambda t: F.gelu(t, approximate=approximate), lambda t: TF.gelu(t, approximate=approximate), x,
             device=device)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_wide_range_noncontiguous_and_float32(device, approximate):
    x = noncontiguous(np.linspace(-5, 5, 201).reshape(3, 67))
    check_op(lambda t: F.gelu(t, approximate=approximate), lambda t: TF.gelu(t, approximate=approximate), x,
             device=device)
    x32 = rand((4, 50), np.float32, seed=2, low=-6, high=6)
    check_op(lambda t: F.gelu(t, approximate=approximate), lambda t: TF.gelu(t, approximate=approximate), x32,
             device=device, rtol=1e-5, atol=1e-5)


def test_gelu_extremes_and_integer_input(device):
    x = tl.tensor([-40.0, -10.0, 0.0, 10.0, 40.0], dtype=tl.float64, device=device)
    np.testing.assert_allclose(host(F.gelu(x)), [0.0, -7.619853024160525e-23, 0.0, 10.0, 40.0], rtol=1e-14)
    y = F.gelu(tl.tensor([1, 2], device=device))
    assert y.dtype == tl.float32
    np.testing.assert_allclose(host(y), TF.gelu(th.tensor([1.0, 2.0])).numpy(), rtol=1e-6)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(tl.ones(2), approximate="sigmoid")


# --- softmax and log_softmax -------------------------------------------------------------------------
DIM_CASES = [((5,), 0), ((5,), -1), ((2, 3), 1), ((2, 3), 0), ((2, 3), -2), ((4, 1, 3), 1), ((4, 2, 3), -1),
             ((1,), 0), ((), 0), ((), -1), ((0, 3), 1), ((0, 3), 0), ((2, 0), 1)]


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", DIM_CASES, ids=str)
def test_softmax_matches_torch(device, name, shape, dim):
    x = rand(shape, low=-3, high=3, seed=5)
    check_op(lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), x, device=device)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_is_stable_noncontiguous_and_a_method(device, name):
    x = noncontiguous(rand((3, 6), low=-1, high=1, seed=6) * 1000)        # exp would overflow unshifted
    out = check_op(lambda t: getattr(t, name)(1), lambda t: getattr(t, name)(1), x, device=device)
    assert np.isfinite(host(out)).all()
    x32 = rand((8, 10), np.float32, seed=7, low=-50, high=50)
    check_op(lambda t: getattr(tl, name)(t, dim=-1), lambda t: getattr(th, name)(t, dim=-1), x32,
             device=device, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_with_minus_inf_and_dtype_argument(device, name):
    x = np.array([[0.5, -np.inf, 1.0], [2.0, 1.0, -np.inf]])
    check_op(lambda t: getattr(F, name)(t, 1), lambda t: getattr(TF, name)(t, 1), x, device=device,
             gradcheck=False)
    x32 = rand((2, 5), np.float32, seed=8)
    t = tl.tensor(x32, device=device, requires_grad=True)
    out = getattr(F, name)(t, 1, dtype=tl.float64)
    ref = getattr(TF, name)(th.tensor(x32), 1, dtype=th.float64)
    assert out.dtype == tl.float64
    np.testing.assert_allclose(host(out), ref.numpy(), rtol=1e-12)
    out.backward(tl.ones(2, 5, dtype=tl.float64, device=device))
    assert t.grad.dtype == tl.float32


def test_softmax_implicit_dim_warns_like_torch():
    x = rand((2, 3), seed=9)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        ours = F.softmax(tl.tensor(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = TF.softmax(th.tensor(x))
    np.testing.assert_allclose(host(ours), ref.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dim_out_of_range(name):
    with pytest.raises(IndexError, match=f"{name}: dimension 2 is out of range"):
        getattr(F, name)(tl.ones(2, 3), 2)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), data=st.data())
def test_softmax_shapes_hypothesis(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = rand(tuple(shape), seed=len(shape), low=-5, high=5)
    for name in ("softmax", "log_softmax"):
        check_op(lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), x, gradcheck=False)


# --- dropout ------------------------------------------------------------------------------------------
def test_dropout_keep_rate_and_scaling(device):
    x = tl.ones(200, 500, device=device)
    y = host(F.dropout(x, p=0.3))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert y.dtype == np.float32


def test_dropout_reproducible_under_manual_seed(device):
    x = tl.randn(50, 40, device=device)
    tl.manual_seed(123)
    a = host(F.dropout(x, 0.5))
    b = host(F.dropout(x, 0.5))
    tl.manual_seed(123)
    c = host(F.dropout(x, 0.5))
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_dropout_gradient_uses_the_forward_mask(device):
    x = tl.tensor(rand((30, 20), seed=10), device=device, requires_grad=True)
    y = F.dropout(x, p=0.4)
    g = rand((30, 20), seed=11)
    y.backward(tl.tensor(g, device=device))
    mask = host(y) != 0
    np.testing.assert_allclose(host(x.grad), np.where(mask, g / 0.6, 0), rtol=1e-12)
    np.testing.assert_allclose(host(y), np.where(mask, host(x) / 0.6, 0), rtol=1e-12)
    assert tl.autograd.gradcheck(lambda t: _seeded_dropout(t), (tl.tensor(rand((3, 4), seed=12), device=device,
                                                                         requires_grad=True),))


def _seeded_dropout(t):
    tl.manual_seed(7)                       # the same mask at every finite-difference evaluation
    return F.dropout(t, 0.5)


def test_dropout_eval_p0_and_p1(device):
    x = tl.tensor(rand((4, 5), seed=13), device=device, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    assert not host(y).any()
    y.backward(tl.ones(4, 5, dtype=tl.float64, device=device))
    assert not host(x.grad).any()


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(tl.ones(3), p)


# --- meta ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [F.gelu, lambda t: F.gelu(t, approximate="tanh"), lambda t: F.softmax(t, 1),
                                lambda t: F.log_softmax(t, -1), lambda t: F.dropout(t, 0.5),
                                lambda t: t.softmax(0), lambda t: F.softmax(t, 1, dtype=tl.float64)],
                         ids=["gelu", "gelu_tanh", "softmax", "log_softmax", "dropout", "method", "dtype"])
def test_meta_activations(fn):
    x = tl.empty(3, 5, device="meta", requires_grad=True)
    y = fn(x)
    assert isinstance(y.array, MetaArray) and y.shape == (3, 5) and y.device == "meta"
    assert y.dtype in (tl.float32, tl.float64)
    y.backward(tl.empty(3, 5, dtype=y.dtype, device="meta"))
    assert isinstance(x.grad.array, MetaArray) and x.grad.shape == (3, 5) and x.grad.dtype == tl.float32


def test_dropout_mask_is_the_counter_based_stream_shared_with_cuda(device):
    """Under tl.manual_seed(s), the first dropout call draws the Philox stream of (seed=s, offset=0), the next
    one continues after it: the same numbers on cpu and cuda (tinylazy.cuda.dropout_fwd is the definition)."""
    x = rand((5, 7), np.float32, seed=14)
    tl.manual_seed(42)
    t = tl.tensor(x, device=device)
    first, second = host(F.dropout(t, 0.3)), host(F.dropout(t, 0.3))
    np.testing.assert_array_equal(first, tl.cuda.dropout_fwd(x, 0.3, 42, 0))
    np.testing.assert_array_equal(second, tl.cuda.dropout_fwd(x, 0.3, 42, 36))    # 35 rounded up to 4s


# --- erf, erfc, Phi: NumPy's piecewise evaluation is the CuPy one, bit for bit ---------------------------
class _NotNumPy:
    """NumPy under another name: `_xpmath` then takes its CuPy code path (every piece everywhere, `where`)."""

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.parametrize("fn", ["erf", "erfc", "normal_cdf"])
def test_erf_pieces_on_their_own_elements_equal_where_over_all_bit_for_bit(fn):
    """NumPy evaluates each fdlibm piece only on the elements in its range, block by block; CuPy evaluates
    every piece everywhere and selects with `where`. Both must give the same bits, at every piece boundary
    (and its neighbours), across blocks, for odd layouts and for 0-d input."""
    bounds = np.array([0.25, 0.84375, 1.25, 1 / 0.35, 6.0, 28.0])
    bounds = np.concatenate([bounds, bounds * math.sqrt(2)])           # normal_cdf's argument is -x/sqrt2
    edges = np.concatenate([np.nextafter(bounds, -np.inf), bounds, np.nextafter(bounds, np.inf)])
    specials = [0.0, -0.0, 5e-324, 1e-300, 1e300, np.inf, np.nan]
    x = np.concatenate([edges, -edges, specials, np.negative(specials),
                        np.random.default_rng(3).standard_normal(3 * _xpmath._BLOCK + 17) * 8])
    f = getattr(_xpmath, fn)
    for dtype in (np.float64, np.float32):
        with np.errstate(over="ignore"):
            v = x.astype(dtype)                                         # 1e300 is inf in float32
        for arr in (v, v[::-3], v[:2 * 3 * 11].reshape(2, 3, 11).transpose(2, 0, 1), v[5].reshape(())):
            ours, ref = f(arr), f(arr, _NotNumPy())
            assert ours.dtype == dtype and ours.shape == arr.shape
            bits = [a.reshape(-1).view(f"u{a.itemsize}") for a in (ours, ref)]   # nan, -0.0: bit for bit
            np.testing.assert_array_equal(*bits)
