"""F.linear: forward and gradients equal PyTorch's for inputs of any rank, float64 gradchecks, only the
needed gradients, clear errors, meta tensors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy.meta import MetaArray
from helpers import check_op, host, noncontiguous, rand, torch

th = torch()
TF = th.nn.functional

X_SHAPES = [(5, 3), (3,), (1, 3), (2, 4, 3), (2, 1, 2, 3), (0, 3), (2, 0, 3)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("x_shape", X_SHAPES, ids=str)
def test_linear_matches_torch(device, x_shape, bias):
    x, w, b = rand(x_shape, seed=1), rand((4, 3), seed=2), rand((4,), seed=3)
    if bias:
        check_op(F.linear, TF.linear, x, w, b, device=device)
    else:
        check_op(F.linear, TF.linear, x, w, device=device)


def test_linear_edge_sizes(device):
    check_op(F.linear, TF.linear, rand((3, 0), seed=4), rand((2, 0), seed=5), rand((2,), seed=6), device=device)
    check_op(F.linear, TF.linear, rand((3, 2), seed=4), rand((0, 2), seed=5), rand((0,), seed=6), device=device)
    check_op(F.linear, TF.linear, rand((1, 1), seed=4), rand((1, 1), seed=5), rand((1,), seed=6), device=device)


def test_linear_noncontiguous_and_transposed_operands(device):
    x = noncontiguous(rand((6, 5), seed=7))
    w = rand((5, 4), seed=8).T                        # a transposed (Fortran-ordered) weight
    b = noncontiguous(rand((4,), seed=9))
    check_op(F.linear, TF.linear, x, w, b, device=device)
    x3 = rand((5, 2, 3), seed=10).transpose(1, 0, 2)   # a rank-3 view that reshape must copy
    check_op(F.linear, TF.linear, x3, rand((4, 3), seed=11), rand((4,), seed=12), device=device)


def test_linear_float32_stays_float32(device):
    x, w, b = (rand(s, np.float32, seed=i) for i, s in enumerate([(32, 784), (256, 784), (256,)]))
    out = check_op(F.linear, TF.linear, x, w, b, device=device, rtol=1e-4, atol=1e-5)
    assert out.dtype == tl.float32


def test_linear_computes_only_needed_gradients(device):
    x = tl.tensor(rand((5, 3), seed=13), device=device)                       # data: no grad
    w = tl.tensor(rand((4, 3), seed=14), device=device, requires_grad=True)
    b = tl.tensor(rand((4,), seed=15), device=device)
    out = F.linear(x, w, b)
    assert out.grad_fn.needs_input_grad == (False, True, False)
    assert not hasattr(out.grad_fn, "weight")            # W is saved only to compute dx
    out.backward(tl.ones(5, 4, dtype=tl.float64, device=device))
    assert x.grad is None and b.grad is None
    np.testing.assert_allclose(host(w.grad), np.ones((5, 4)).T @ host(x), rtol=1e-12)


def test_linear_gradients_accumulate_and_do_not_alias(device):
    x = tl.tensor(rand((5, 3), seed=16), device=device, requires_grad=True)
    w = tl.tensor(rand((4, 3), seed=17), device=device, requires_grad=True)
    b = tl.tensor(rand((4,), seed=18), device=device, requires_grad=True)
    g = tl.tensor(rand((5, 4), seed=19), device=device)
    F.linear(x, w, b).backward(g)
    first = [host(t.grad).copy() for t in (x, w, b)]
    F.linear(x, w, b).backward(g)
    for t, f in zip((x, w, b), first):
        np.testing.assert_allclose(host(t.grad), 2 * f, rtol=1e-12)


def test_linear_accepts_raw_arrays_as_weight():
    x = tl.tensor(rand((2, 3), seed=20))
    w = rand((4, 3), seed=21)
    np.testing.assert_allclose(host(F.linear(x, w)), host(x) @ w.T, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(lead=st.lists(st.integers(0, 3), min_size=0, max_size=3), n_in=st.integers(1, 4),
       n_out=st.integers(1, 4), bias=st.booleans())
def test_linear_shapes_hypothesis(lead, n_in, n_out, bias):
    x = rand(tuple(lead) + (n_in,), seed=22)
    args = (x, rand((n_out, n_in), seed=23)) + ((rand((n_out,), seed=24),) if bias else ())
    check_op(F.linear, TF.linear, *args, gradcheck=False)


# --- errors -------------------------------------------------------------------------------------------
def test_linear_shape_error_names_op_in_features_and_shape():
    with pytest.raises(tl.ShapeError, match=r"linear: expected input with last dimension in_features=20 .*"
                                            r"got input of shape \(5, 3\)"):
        F.linear(tl.ones(5, 3), tl.ones(10, 20))
    with pytest.raises(tl.ShapeError, match="in_features=3"):
        F.linear(tl.ones(()), tl.ones(2, 3))
    with pytest.raises(tl.ShapeError, match=r"bias of shape \(10,\).*got \(3,\)"):
        F.linear(tl.ones(5, 20), tl.ones(10, 20), tl.ones(3))
    with pytest.raises(tl.ShapeError, match=r"weight must have shape \(out_features, in_features\)"):
        F.linear(tl.ones(5, 20), tl.ones(20))
    assert issubclass(tl.ShapeError, ValueError)


def test_linear_integer_input_says_convert_with_float():
    with pytest.raises(TypeError, match=r"linear: the input is int64.*\.float\(\)"):
        F.linear(tl.tensor([[1, 2, 3]]), tl.ones(4, 3))


def test_linear_mixed_float_dtypes_name_both():
    with pytest.raises(TypeError, match="float64.*float32"):
        F.linear(tl.ones(2, 3, dtype=tl.float64), tl.ones(4, 3))


def test_linear_mixed_devices_name_both():
    with pytest.raises(RuntimeError, match="cpu.*meta|meta.*cpu"):
        F.linear(tl.ones(2, 3), tl.empty(4, 3, device="meta"))


# --- meta -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(2, 5, 3), (3,), (7, 3)], ids=str)
def test_linear_meta(x_shape):
    x = tl.empty(*x_shape, device="meta", requires_grad=True)
    w = tl.empty(4, 3, device="meta", requires_grad=True)
    b = tl.empty(4, device="meta", requires_grad=True)
    y = F.linear(x, w, b)
    assert isinstance(y.array, MetaArray) and y.shape == x_shape[:-1] + (4,) and y.dtype == tl.float32
    y.backward(tl.empty(*y.shape, device="meta"))
    for t in (x, w, b):
        assert isinstance(t.grad.array, MetaArray) and t.grad.shape == t.shape
    with pytest.raises(tl.ShapeError, match="in_features=3"):
        F.linear(tl.empty(2, 5, device="meta"), w)
    assert F.linear(tl.empty(2, 3, dtype=tl.float64, device="meta"),
                    tl.empty(4, 3, dtype=tl.float64, device="meta")).dtype == tl.float64


# --- activation="..." (the fused epilogue) ------------------------------------------------------------
UNFUSED = {"relu": F.relu, "tanh": F.tanh, "sigmoid": F.sigmoid, "gelu": F.gelu,
           "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("x_shape", [(9, 6), (2, 5, 6)], ids=str)
@pytest.mark.parametrize("act", sorted(UNFUSED))
def test_linear_activation_is_bit_identical_to_the_two_ops(act, x_shape, bias, dtype):
    """On cpu, linear(x, w, b, activation=act) runs the same reference code (tinylazy.cuda's act and bias_act)
    as act(linear(x, w, b)): the output and the gradients of x, w and b are equal bit for bit, not just close.
    (The inputs reach gelu's far tails, where two erf implementations would differ.)"""
    x, w = rand(x_shape, dtype, seed=30, low=-4, high=4), rand((7, 6), dtype, seed=31, low=-2, high=2)
    b = rand((7,), dtype, seed=32, low=-3, high=3) if bias else None
    g = rand(x_shape[:-1] + (7,), dtype, seed=33)
    results = []
    for fused in (True, False):
        ts = [tl.tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
        y = F.linear(*ts, activation=act) if fused else UNFUSED[act](F.linear(*ts))
        y.backward(tl.tensor(g))
        results.append([host(y)] + [host(t.grad) for t in ts])
    for what, a, c in zip(["forward", "grad x", "grad w", "grad b"], *results):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, c, err_msg=f"{act}: {what}")
