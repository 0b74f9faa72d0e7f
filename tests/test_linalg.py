"""Matrix products: matmul (1-d operands, batches, broadcasting), mm, bmm, dot, mv, outer -- forward and
gradients equal PyTorch's, float64 gradchecks, hypothesis-driven batch broadcasting, errors, meta."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinylazy as tl
from tinylazy.meta import MetaArray
from helpers import check_op, host, rand, torch
from test_reduce import check_noncontiguous

th = torch()

MATMUL_SHAPES = [
    ((2, 3), (3, 4)), ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)), ((2, 1, 2, 3), (4, 3, 2)),
    ((1, 2, 3), (4, 3, 2)), ((4, 1, 2, 3), (1, 5, 3, 2)), ((1, 3), (3, 1)), ((0, 3), (3, 2)), ((2, 0), (0, 3)),
    ((0,), (0,)), ((3, 2, 0), (0, 4)), ((2, 3), (2, 3, 0)), ((0, 2, 3), (3, 4)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=str)
def test_matmul_matches_torch(device, sa, sb):
    a, b = rand(sa, seed=1), rand(sb, seed=2)
    check_op(tl.matmul, th.matmul, a, b, device=device)
    check_op(lambda x, y: x @ y, lambda x, y: x @ y, a, b, device=device)


@pytest.mark.parametrize("needs", [(True, False), (False, True)])
def test_matmul_one_input_needs_grad(device, needs):
    a, b = rand((4, 2, 3), seed=3), rand((3, 5), seed=4)
    x, y = tl.tensor(a, device=device), tl.tensor(b, device=device)
    x.requires_grad_(needs[0])
    y.requires_grad_(needs[1])
    (x @ y).sum().backward()
    assert (x.grad is not None) == needs[0] and (y.grad is not None) == needs[1]


def test_matmul_noncontiguous_and_transposed(device):
    a = rand((3, 4), seed=5)
    check_noncontiguous(lambda t: t @ t.T, lambda t: t @ t.T, a, device)
    check_noncontiguous(lambda t: t.T @ t, lambda t: t.T @ t, a, device)
    check_op(lambda x, y: x.mT @ y, lambda x, y: x.mT @ y, rand((2, 3, 4), seed=6), rand((2, 3, 5), seed=7),
             device=device)


def test_matmul_with_raw_arrays_and_float32(device):
    a, b = rand((2, 3), np.float32, seed=8), rand((3, 4), np.float32, seed=9)
    x = tl.tensor(a, device=device)
    out = x @ tl.tensor(b, device=device).array              # `X @ layer.weight.array` works
    assert out.dtype == tl.float32 and out.shape == (2, 4)
    np.testing.assert_allclose(host(out), a @ b, rtol=1e-5)
    if device == "cpu":
        np.testing.assert_allclose(host(a @ x.T), a @ a.T, rtol=1e-5)     # ndarray @ Tensor
    check_op(tl.matmul, th.matmul, a, b, device=device, rtol=1e-5, atol=1e-6)


@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
    ba = tuple(s if draw(st.booleans()) else 1 for s in batch)[draw(st.integers(0, len(batch))):]
    bb = tuple(s if draw(st.booleans()) else 1 for s in batch)[draw(st.integers(0, len(batch))):]
    sa = (k,) if draw(st.integers(0, 4)) == 0 else ba + (n, k)
    sb = (k,) if draw(st.integers(0, 4)) == 0 else bb + (k, m)
    return sa, sb


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=matmul_shapes())
def test_matmul_broadcasting_hypothesis(device, shapes):
    sa, sb = shapes
    a, b = rand(sa, seed=10), rand(sb, seed=11)
    check_op(tl.matmul, th.matmul, a, b, device=device, gradcheck=a.size + b.size <= 40)


def test_mm_bmm_dot_mv_outer(device):
    check_op(tl.mm, th.mm, rand((2, 3), seed=12), rand((3, 4), seed=13), device=device)
    check_op(lambda x, y: x.mm(y), lambda x, y: x.mm(y), rand((1, 3), seed=12), rand((3, 1), seed=13), device=device)
    check_op(tl.bmm, th.bmm, rand((4, 2, 3), seed=14), rand((4, 3, 5), seed=15), device=device)
    check_op(tl.dot, th.dot, rand((5,), seed=16), rand((5,), seed=17), device=device)
    check_op(lambda x, y: x.dot(y), lambda x, y: x.dot(y), rand((0,), seed=16), rand((0,), seed=17), device=device)
    check_op(tl.mv, th.mv, rand((2, 3), seed=18), rand((3,), seed=19), device=device)
    check_op(tl.outer, th.outer, rand((2,), seed=20), rand((3,), seed=21), device=device)


def test_matmul_errors_name_both_shapes(device):
    a, b = tl.ones(2, 3, device=device), tl.ones(4, 5, device=device)
    with pytest.raises(tl.ShapeError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied "
                                            r"\(inner sizes 3 != 4\)"):
        a @ b
    with pytest.raises(tl.ShapeError, match=r"matmul: the batch dims of shapes \(2, 2, 3\) and \(3, 3, 4\) do not "
                                            r"broadcast"):
        tl.ones(2, 2, 3, device=device) @ tl.ones(3, 3, 4, device=device)
    with pytest.raises(tl.ShapeError, match=r"matmul: both arguments need at least one dimension.*\(\) and \(2, 3\)"):
        tl.matmul(tl.tensor(2.0, device=device), a)
    with pytest.raises(tl.ShapeError, match="Python number"):
        tl.matmul(a, 2.0)
    with pytest.raises(tl.ShapeError, match=r"\(3,\) and \(4, 5\)"):
        tl.ones(3, device=device) @ b
    with pytest.raises(tl.ShapeError, match=r"mm: expects two matrices \(2-d\), got shapes \(2, 3\) and \(3,\)"):
        tl.mm(a, tl.ones(3, device=device))
    with pytest.raises(tl.ShapeError, match=r"bmm: shapes \(2, 2, 3\) and \(3, 3, 1\)"):
        tl.bmm(tl.ones(2, 2, 3, device=device), tl.ones(3, 3, 1, device=device))
    with pytest.raises(tl.ShapeError, match=r"dot: .*\(2,\) and \(3,\)"):
        tl.dot(tl.ones(2, device=device), tl.ones(3, device=device))
    with pytest.raises(ValueError):                         # ShapeError is a ValueError
        tl.mv(a, tl.ones(2, device=device))


def test_matmul_mixed_devices_name_both():
    with pytest.raises(RuntimeError, match="cpu and meta"):
        tl.ones(2, 3) @ tl.empty(3, 4, device="meta")


@pytest.mark.parametrize("sa,sb,shape", [((2, 3), (3, 4), (2, 4)), ((3,), (3,), ()), ((3,), (5, 3, 4), (5, 4)),
                                         ((5, 2, 3), (3,), (5, 2)), ((4, 1, 2, 3), (5, 3, 2), (4, 5, 2, 2)),
                                         ((7, 2, 3), (3, 4), (7, 2, 4))], ids=str)
def test_meta_device(sa, sb, shape):
    a = tl.empty(*sa, device="meta", requires_grad=True)
    b = tl.empty(*sb, device="meta", requires_grad=True)
    out = a @ b
    assert out.shape == shape and out.dtype == tl.float32 and isinstance(out.array, MetaArray)
    if len(sa) == len(sb) or len(sb) == 1 and len(sa) == 1 or (len(sa) > 2 and len(sb) == 2):
        out.sum().backward()
        assert a.grad.shape == sa and b.grad.shape == sb and isinstance(a.grad.array, MetaArray)
    with pytest.raises(tl.ShapeError, match=r"\(2, 3\) and \(4, 4\)"):
        tl.empty(2, 3, device="meta") @ tl.empty(4, 4, device="meta")
    assert tl.mm(tl.empty(2, 3, device="meta"), tl.empty(3, 1, device="meta")).shape == (2, 1)
    assert tl.outer(tl.empty(2, device="meta"), tl.empty(3, device="meta")).shape == (2, 3)
