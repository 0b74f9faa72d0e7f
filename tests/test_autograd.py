"""The autograd engine: accumulation, graph freeing, retain_grad, custom Functions, deep graphs, errors."""
import numpy as np
import pytest

import tinylazy as tl
from tinylazy.autograd import Function, GradcheckError, gradcheck


def test_gradients_accumulate_across_backward_calls():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    (x * x).backward(tl.ones(2))
    (x * 3.0).backward(tl.ones(2))
    assert x.grad.tolist() == [5.0, 7.0]


def test_same_tensor_used_twice_accumulates():
    x = tl.tensor([3.0], requires_grad=True)
    y = x * x + x
    y.backward(tl.ones(1))
    assert x.grad.tolist() == [7.0]


def test_diamond_graph_sums_both_paths():
    x = tl.tensor([2.0], requires_grad=True)
    a = x * 3.0
    b = a.exp()
    c = a * 2.0
    (b + c).backward(tl.ones(1))
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp(6.0) + 6.0, rtol=1e-6)


def test_shared_grad_array_is_not_aliased_between_leaves():
    x = tl.tensor([1.0], requires_grad=True)
    y = tl.tensor([1.0], requires_grad=True)
    (x + y).backward(tl.ones(1))
    x.grad += 10
    assert y.grad.tolist() == [1.0]
    (x + y).backward(tl.ones(1))
    assert x.grad.tolist() == [12.0] and y.grad.tolist() == [2.0]


def test_backward_twice_without_retain_graph_raises():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2.0)
    y.backward(tl.ones(2))
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward(tl.ones(2))


def test_retain_graph_allows_second_backward():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp() * 2.0
    y.backward(tl.ones(2), retain_graph=True)
    y.backward(tl.ones(2))
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp([1.0, 2.0]), rtol=1e-6)


def test_nonscalar_backward_without_gradient_raises():
    x = tl.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar outputs.*shape \(3,\).*gradient="):
        (x * 2).backward()


@pytest.mark.parametrize("shape", [(), (1,), (1, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_implicit_seed_of_a_one_element_output(shape, dtype):
    """backward() without a gradient seeds with ones of the output's shape and dtype, as PyTorch does."""
    x = tl.tensor(np.full(shape, 2.0, dtype), requires_grad=True)
    y = x * 3
    y.retain_grad()
    y.backward()
    assert y.grad.shape == shape and y.grad.dtype == dtype and np.array_equal(y.grad.numpy(), np.ones(shape, dtype))
    assert x.grad.shape == shape and x.grad.dtype == dtype and np.array_equal(x.grad.numpy(), np.full(shape, 3, dtype))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tl.ones(1).backward()


def test_backward_gradient_shape_mismatch_raises():
    x = tl.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(2,\).*\(3,\)"):
        (x * 2).backward(tl.ones(2))


def test_non_leaf_grad_is_none_unless_retained():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    z = y * y
    y.retain_grad()
    w = x + 1.0
    (z + w).backward(tl.ones(2))
    assert y.grad.tolist() == [4.0, 8.0]
    assert w.grad is None
    assert y.retains_grad and not w.is_leaf and x.is_leaf


def test_leaf_retain_grad_is_a_no_op():
    x = tl.tensor([1.0], requires_grad=True)
    x.retain_grad()
    (x * 2).backward(tl.ones(1))
    assert x.grad.tolist() == [2.0]


def test_no_grad_records_nothing_and_enable_grad_inside():
    x = tl.ones(2, requires_grad=True)
    with tl.no_grad():
        y = x * 2
        assert not tl.is_grad_enabled()
        with tl.enable_grad():
            z = x * 2
    assert tl.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None


def test_no_grad_as_decorator_and_set_grad_enabled():
    @tl.no_grad()
    def f(t):
        return t * 2

    assert not f(tl.ones(1, requires_grad=True)).requires_grad
    with tl.set_grad_enabled(False):
        assert not (tl.ones(1, requires_grad=True) * 2).requires_grad
    assert tl.is_grad_enabled()


def test_detach_cuts_graph():
    x = tl.ones(2, requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.grad_fn is None


def test_hundred_thousand_op_chain_has_no_recursion_limit():
    x = tl.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 0.0
    y.backward(tl.ones(1))
    assert x.grad.tolist() == [1.0]


def test_requires_grad_only_for_floats():
    with pytest.raises(RuntimeError, match="only floating-point tensors can require gradients.*int64"):
        tl.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\.float\(\)"):
        tl.arange(3).requires_grad_()


def test_mixed_devices_name_both():
    a = tl.ones(2)
    b = tl.empty(2, device="meta")
    with pytest.raises(RuntimeError, match=r"same device.*cpu.*meta"):
        a + b
    with pytest.raises(RuntimeError, match=r"same device.*meta.*cpu"):      # either order
        b + a


# --- custom Functions ------------------------------------------------------------------------------
class Cube(Function):
    """PyTorch's spelling: static methods with ctx first."""
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * grad


class ScaleBy(Function):
    """tinylazy's spelling: plain methods, `self` is the context; a non-tensor argument."""
    def forward(self, x, factor):
        self.factor = factor
        return x * factor

    def backward(self, grad):
        return grad * self.factor, None


class SplitHalves(Function):
    """Two outputs."""
    def forward(self, x):
        n = x.shape[0] // 2
        return x[:n] * 2, x[n:] * 3

    def backward(self, ga, gb):
        return np.concatenate([ga * 2, gb * 3])


def test_custom_function_static_style():
    x = tl.tensor([1.0, 2.0], dtype=tl.float64, requires_grad=True)
    assert gradcheck(Cube.apply, (x,))
    Cube.apply(x).backward(tl.ones(2, dtype=tl.float64))
    assert x.grad.tolist() == [3.0, 12.0]


def test_custom_function_method_style_with_constant():
    x = tl.tensor([1.0, 2.0], dtype=tl.float64, requires_grad=True)
    assert gradcheck(lambda t: ScaleBy.apply(t, 4.0), (x,))


def test_custom_function_two_outputs():
    x = tl.tensor([1.0, 2.0, 3.0, 4.0], dtype=tl.float64, requires_grad=True)
    a, b = SplitHalves.apply(x)
    (a * a + 0).backward(tl.ones(2, dtype=tl.float64), retain_graph=True)
    assert x.grad.tolist() == [8.0, 16.0, 0.0, 0.0]
    x.grad = None
    b.backward(tl.ones(2, dtype=tl.float64))
    assert x.grad.tolist() == [0.0, 0.0, 3.0, 3.0]


def test_backward_gradient_of_another_dtype_is_cast_to_the_input():
    class Upcast(Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return (g * 2).astype(np.float64)

    x = tl.ones(3, requires_grad=True)                  # float32: the leaf and the node before it get float32
    y = x * 3
    Upcast.apply(y).sum().backward()
    assert x.grad.dtype == tl.float32 and x.grad.tolist() == [6.0, 6.0, 6.0]
    Upcast.apply(x).sum().backward()                    # and a leaf that already has a .grad adds it in
    assert x.grad.dtype == tl.float32 and x.grad.tolist() == [8.0, 8.0, 8.0]


def test_backward_returning_wrong_shape_names_the_op():
    class Bad(Function):
        def forward(self, x):
            return x * 1

        def backward(self, g):
            return g[:1]

    x = tl.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Bad\.backward.*shape \(1,\).*shape \(3,\)"):
        Bad.apply(x).backward(tl.ones(3))


def test_gradcheck_reports_input_element_and_values():
    class WrongGrad(Function):
        def forward(self, x):
            return x * x

        def backward(self, g):
            return g * 3.0

    x = tl.tensor([1.0, 2.0], dtype=tl.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0, element \(0,\).*analytic.*numeric"):
        gradcheck(WrongGrad.apply, (x,))


def test_gradcheck_requires_float64():
    with pytest.raises(ValueError, match="float64"):
        gradcheck(lambda t: t * 2, (tl.ones(2, requires_grad=True),))
