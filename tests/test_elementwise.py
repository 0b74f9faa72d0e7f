"""Elementwise ops: forward and gradients equal PyTorch's, float64 gradchecks, broadcasting, edge shapes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinylazy as tl
from helpers import check_op, noncontiguous, rand, torch

th = torch()

UNARY = [
    ("exp", tl.exp, th.exp, (-1, 1)),
    ("log", tl.log, th.log, (0.1, 2)),
    ("log1p", tl.log1p, th.log1p, (-0.5, 2)),
    ("sqrt", tl.sqrt, th.sqrt, (0.1, 2)),
    ("rsqrt", tl.rsqrt, th.rsqrt, (0.1, 2)),
    ("sin", tl.sin, th.sin, (-3, 3)),
    ("cos", tl.cos, th.cos, (-3, 3)),
    ("tanh", tl.tanh, th.tanh, (-3, 3)),
    ("sigmoid", tl.sigmoid, th.sigmoid, (-6, 6)),
    ("relu", tl.relu, th.relu, (-1, 1)),
    ("abs", tl.abs, th.abs, (-1, 1)),
    ("neg", lambda x: -x, lambda x: -x, (-1, 1)),
    ("square", tl.square, th.square, (-1, 1)),
]

SHAPES = [(), (1,), (3,), (2, 3), (4, 1, 3), (0, 3), (2, 0)]


@pytest.mark.parametrize("name,ours,theirs,rng", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unary_matches_torch(device, name, ours, theirs, rng, shape):
    x = rand(shape, low=rng[0], high=rng[1], seed=3)
    check_op(ours, theirs, x, device=device)


@pytest.mark.parametrize("name,ours,theirs,rng", UNARY, ids=[u[0] for u in UNARY])
def test_unary_noncontiguous_and_method(device, name, ours, theirs, rng):
    x = noncontiguous(rand((3, 4), low=rng[0], high=rng[1], seed=4))
    check_op(ours, theirs, x, device=device)
    if hasattr(tl.Tensor, name):
        t = tl.tensor(x, device=device)
        np.testing.assert_allclose(tl.backend.to_device(getattr(t, name)().array, "cpu"),
                                   tl.backend.to_device(ours(t).array, "cpu"))


BINARY = [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b),
    ("pow", lambda a, b: a ** b),
    ("maximum", None),
    ("minimum", None),
    ("remainder", None),
]

BROADCASTS = [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1, 3), (2, 1)), ((1,), (2, 3)), ((), (2, 2)),
              ((0, 3), (1, 3)), ((2, 1), (1, 0))]


def _binary(name):
    return {"maximum": (tl.maximum, th.maximum), "minimum": (tl.minimum, th.minimum),
            "remainder": (tl.remainder, th.remainder)}[name]


@pytest.mark.parametrize("name,fn", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("sa,sb", BROADCASTS, ids=str)
def test_binary_matches_torch_with_broadcasting(device, name, fn, sa, sb):
    ours, theirs = (fn, fn) if fn is not None else _binary(name)
    low = 0.5 if name in ("pow", "div", "remainder") else -1
    a, b = rand(sa, low=low, high=2, seed=1), rand(sb, low=low, high=2, seed=2)
    check_op(ours, theirs, a, b, device=device)


@pytest.mark.parametrize("name,fn", BINARY[:5], ids=[b[0] for b in BINARY[:5]])
def test_binary_with_python_scalars_both_sides(device, name, fn):
    a = rand((2, 3), low=0.5, high=2, seed=5)
    check_op(lambda x: fn(x, 1.5), lambda x: fn(x, 1.5), a, device=device)
    check_op(lambda x: fn(1.5, x), lambda x: fn(1.5, x), a, device=device)


def test_pow_tensor_exponent_zero_base_gradient(device):
    check_op(lambda a, b: a ** b, lambda a, b: a ** b, np.array([0.0, 0.5, 2.0]), np.array([2.0, 1.5, 0.5]),
             device=device, gradcheck=False)


def test_maximum_ties_split_gradient_like_torch(device):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 4.0])
    check_op(tl.maximum, th.maximum, a, b, device=device, gradcheck=False)
    check_op(tl.minimum, th.minimum, a, b, device=device, gradcheck=False)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (None, 0.2), (-0.2, None)])
def test_clamp(device, lo, hi):
    x = rand((3, 4), seed=7)
    check_op(lambda t: tl.clamp(t, lo, hi), lambda t: th.clamp(t, lo, hi), x, device=device)
    check_op(lambda t: t.clamp(min=lo, max=hi), lambda t: t.clamp(min=lo, max=hi), x, device=device)


def test_clamp_with_tensor_bounds(device):
    x, lo = rand((3, 4), seed=8), rand((4,), seed=9) * 0.5
    check_op(lambda t, m: tl.clamp(t, min=m), lambda t, m: th.clamp(t, min=m), x, lo, device=device)


def test_where(device):
    cond = rand((3, 4), seed=1) > 0
    x, y = rand((3, 4), seed=2), rand((4,), seed=3)
    check_op(lambda a, b: tl.where(tl.tensor(cond, device=device), a, b),
             lambda a, b: th.where(th.from_numpy(cond), a, b), x, y, device=device)
    check_op(lambda a: tl.where(tl.tensor(cond, device=device), a, 0.0),
             lambda a: th.where(th.from_numpy(cond), a, 0.0), x, device=device)


def test_where_rejects_non_bool_condition():
    with pytest.raises(TypeError, match="where: the condition must be a bool tensor"):
        tl.where(tl.ones(2), tl.ones(2), tl.zeros(2))


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=3))
def test_broadcasting_shapes_hypothesis(shapes):
    sa, sb = shapes.input_shapes
    a, b = rand(sa, seed=1), rand(sb, seed=2) + 2.0
    for fn in (lambda x, y: x * y + x, lambda x, y: x / y - y):
        check_op(fn, fn, a, b, gradcheck=False)


@settings(max_examples=15, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3))
def test_broadcast_gradcheck_hypothesis(shapes):
    sa, sb = shapes.input_shapes
    a = tl.tensor(rand(sa, seed=3), requires_grad=True)
    b = tl.tensor(rand(sb, seed=4) + 2.0, requires_grad=True)
    assert tl.autograd.gradcheck(lambda x, y: (x * y).sigmoid() / y, (a, b))


# --- dtypes and promotion --------------------------------------------------------------------------
def test_python_scalars_never_upcast():
    x = tl.ones(3)
    assert (x * 2.0).dtype == tl.float32
    assert (2.0 * x).dtype == tl.float32
    assert (x + 1).dtype == tl.float32
    assert (x ** 2).dtype == tl.float32
    h = tl.ones(3, dtype=tl.float16)
    assert (h * 3.5).dtype == tl.float16


def test_float_scalar_with_int_tensor_gives_default_float():
    i = tl.arange(3)
    assert i.dtype == tl.int64
    assert (i * 2.5).dtype == tl.float32
    assert (i + 1).dtype == tl.int64
    assert (i / 2).dtype == tl.float32
    np.testing.assert_allclose((i / 2).numpy(), [0, 0.5, 1.0])
    assert tl.exp(i).dtype == tl.float32
    assert (tl.tensor([True, False]) + 1).dtype == tl.int64


def test_tensor_tensor_promotion_follows_pytorch():      # (tests/test_promotion.py has every pair)
    a, b = tl.ones(2, dtype=tl.float32), tl.ones(2, dtype=tl.float64)
    assert (a + b).dtype == tl.float64
    assert (tl.ones(2, dtype=tl.int32) + tl.ones(2, dtype=tl.int64)).dtype == tl.int64
    assert (a + tl.ones(2, dtype=tl.int64)).dtype == tl.float32                  # NumPy would say float64
    assert (tl.ones(2, dtype=tl.float16) + tl.ones(2, dtype=tl.int64)).dtype == tl.float16


def test_raw_array_operands(device):
    x = tl.ones(2, 3, device=device)
    w = tl.ones(3, device=device).array
    assert np.allclose(tl.backend.to_device((x * w).array, "cpu"), 1.0)
    assert np.allclose(tl.backend.to_device((w + x).array, "cpu"), 2.0)


def test_comparisons_are_bool_without_grad(device):
    x = tl.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    for r in (x > 2, x >= 2, x < 2, x <= 2, x == 2, x != 2):
        assert r.dtype == tl.bool and not r.requires_grad
    assert (x == 2).tolist() == [False, True, False]
    assert (~(x > 1)).tolist() == [True, False, False]


def test_nondifferentiable_ops_give_no_grad():
    x = tl.tensor([1.5, -2.5], requires_grad=True)
    for r in (tl.floor(x), tl.sign(x), x // 1, tl.isnan(x)):
        assert not r.requires_grad


# --- errors ----------------------------------------------------------------------------------------
def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, ?3\).*\(4,?\)|\(4,?\).*\(2, ?3\)"):
        tl.ones(2, 3) + tl.ones(4)


def test_inplace_on_leaf_requiring_grad_raises_outside_no_grad():
    w = tl.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="in place.*no_grad"):
        w += 1
    with pytest.raises(RuntimeError, match="zero_"):
        w.zero_()
    with tl.no_grad():
        w -= 0.5 * tl.ones(3)
    assert w.tolist() == [0.5, 0.5, 0.5] and w.requires_grad and w.is_leaf


def test_inplace_on_graph_tensor_rebinds():
    w = tl.ones(3, requires_grad=True)
    y = w * 2
    y += 1
    y.sum().backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]


def test_inplace_on_plain_tensor_changes_it():
    x = tl.ones(3)
    alias = x
    x *= 3
    assert alias.tolist() == [3.0, 3.0, 3.0]
