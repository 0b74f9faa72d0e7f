"""Inputs that PyTorch refuses and that used to give a silently wrong result: negative or out-of-range
indices for gather / index_select / embedding, integer division by zero, a negative size other than -1
in reshape, and BatchNorm training on one value per channel (refused before any state changes)."""
import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn

torch = pytest.importorskip("torch")


def _both_raise(fn, ours_type, theirs_type=None):
    with pytest.raises(theirs_type or ours_type):
        fn(torch)
    with pytest.raises(ours_type) as info:
        fn(tl)
    return str(info.value)


# --- indices ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, -3, 4, 100])
def test_gather_refuses_negative_and_out_of_range_indices(device, bad):
    def fn(lib):
        kw = {"device": device} if lib is tl else {}
        x = lib.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], **kw)
        return lib.gather(x, 1, lib.tensor([[0, bad], [1, 2]], **kw))

    msg = _both_raise(fn, IndexError, RuntimeError)     # PyTorch's gather raises a RuntimeError
    assert f"gather: index {bad} is out of range for dim 1 of size 4" in msg


@pytest.mark.parametrize("bad", [-1, 3])
def test_gather_along_dim_0_and_in_range_values_match_pytorch(device, bad):
    x = np.arange(6.0).reshape(3, 2)
    ok = np.array([[2, 0], [1, 1]])
    ours = tl.gather(tl.tensor(x, device=device), 0, tl.tensor(ok, device=device))
    np.testing.assert_array_equal(ours.numpy(), torch.gather(torch.tensor(x), 0, torch.tensor(ok)).numpy())
    with pytest.raises(IndexError, match=f"index {bad} is out of range for dim 0 of size 3"):
        tl.gather(tl.tensor(x, device=device), 0, tl.tensor([[bad, 0]], device=device))


@pytest.mark.parametrize("bad", [-1, -4, 3, 9])
def test_index_select_refuses_negative_and_out_of_range_indices(device, bad):
    def fn(lib):
        kw = {"device": device} if lib is tl else {}
        x = lib.arange(12.0, **kw).reshape(4, 3)
        return lib.index_select(x, 1, lib.tensor([0, bad], **kw))

    msg = _both_raise(fn, IndexError, (IndexError, RuntimeError))    # PyTorch's depends on the dim
    assert f"index_select: index {bad} is out of range for dim 1 of size 3" in msg
    x = tl.arange(12.0, device=device).reshape(4, 3)
    np.testing.assert_array_equal(x.index_select(0, tl.tensor([3, 0, 3], device=device)).numpy(),
                                  torch.arange(12.0).reshape(4, 3).index_select(0, torch.tensor([3, 0, 3])).numpy())


def test_index_select_on_a_0d_tensor(device):
    x = tl.tensor(5.0, device=device)
    assert x.index_select(0, tl.tensor([0], device=device)).item() == 5.0
    with pytest.raises(IndexError, match="index -1 is out of range"):
        x.index_select(0, tl.tensor([-1], device=device))


@pytest.mark.parametrize("bad", [-1, 3])
def test_embedding_refuses_negative_and_out_of_range_indices(device, bad):
    def fn(lib):
        kw = {"device": device} if lib is tl else {}
        return lib.nn.functional.embedding(lib.tensor([0, bad], **kw), lib.ones(3, 2, **kw))

    msg = _both_raise(fn, IndexError)
    assert f"index {bad} is out of range" in msg


# --- integer division by zero ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", [
    lambda lib, a, b: a // b, lambda lib, a, b: a % b, lambda lib, a, b: lib.floor_divide(a, b),
    lambda lib, a, b: lib.remainder(a, b), lambda lib, a, b: lib.div(a, b, rounding_mode="floor"),
    lambda lib, a, b: lib.div(a, b, rounding_mode="trunc"),
], ids=["//", "%", "floor_divide", "remainder", "div-floor", "div-trunc"])
@pytest.mark.parametrize("divisor", ["scalar", "tensor", "python-on-left"])
def test_integer_division_by_zero_raises(device, op, divisor):
    def fn(lib):
        kw = {"device": device} if lib is tl else {}
        a = lib.tensor([7, -7, 3], **kw)
        if divisor == "scalar":
            return op(lib, a, 0)
        if divisor == "tensor":
            return op(lib, a, lib.tensor([2, 0, 1], **kw))
        return op(lib, 5, lib.tensor([1, 0, 2], **kw))

    assert "ZeroDivisionError" in _both_raise(fn, RuntimeError)


def test_integer_division_in_place_by_zero_raises_and_leaves_the_tensor(device):
    a = tl.tensor([7, -7], device=device)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        a //= 0
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        a %= tl.tensor([0, 1], device=device)
    assert a.tolist() == [7, -7] and a._version == 0


def test_division_without_zero_and_float_division_by_zero_still_work(device):
    a, ta = tl.tensor([7, -7, 3], device=device), torch.tensor([7, -7, 3])
    for ours, theirs in ((a // 2, ta // 2), (a % -2, ta % -2), (a // tl.tensor([2, 3, -1], device=device),
                                                                ta // torch.tensor([2, 3, -1]))):
        assert ours.tolist() == theirs.tolist()
    f = tl.tensor([1.0, -1.0, 0.0], device=device)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (f // 0).numpy()
        rem = (f % 0).numpy()
    np.testing.assert_array_equal(out, (torch.tensor([1.0, -1.0, 0.0]) // 0).numpy())
    assert np.isnan(rem).all()


# --- reshape -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(-2, 6), (6, -3), ((-2, 6),), (-1, -2)])
def test_reshape_refuses_negative_sizes_other_than_minus_one(device, shape):
    x = tl.arange(12, device=device)
    with pytest.raises(RuntimeError):
        torch.arange(12).reshape(*shape)
    with pytest.raises(tl.ShapeError, match=r"reshape: invalid size -[23]"):
        x.reshape(*shape)
    with pytest.raises(tl.ShapeError, match=r"reshape: invalid size -[23]"):
        x.view(*shape)
    assert x.reshape(-1, 6).shape == (2, 6)


# --- BatchNorm on one value per channel ---------------------------------------------------------------
@pytest.mark.parametrize("make, shape", [
    (nn.BatchNorm1d, (1, 3)), (nn.BatchNorm1d, (0, 3)), (nn.BatchNorm2d, (1, 3, 1, 1)),
    (nn.BatchNorm1d, (1, 3, 1)),
], ids=["1d-batch1", "1d-batch0", "2d-1x1", "1d-length1"])
def test_batchnorm_training_on_one_value_per_channel_changes_no_state(device, make, shape):
    bn = make(3, momentum=None).to(device)
    good = tl.randn(*((4,) + shape[1:-1] + (2,) if len(shape) > 2 else (4, 3)), device=device)
    bn(good)
    state = {k: v.numpy().copy() for k, v in bn.state_dict().items()}
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(tl.zeros(*shape, device=device))
    after = bn.state_dict()
    assert int(after["num_batches_tracked"].item()) == 1
    for k, v in state.items():
        np.testing.assert_array_equal(after[k].numpy(), v, err_msg=k)


def test_batchnorm_with_a_wrong_input_changes_no_state():
    bn = nn.BatchNorm1d(3)
    bn(tl.randn(4, 3))
    for bad in (tl.randn(4, 5), tl.randn(4, 3).long()):
        with pytest.raises((ValueError, TypeError)):
            bn(bad)
    assert int(bn.num_batches_tracked.item()) == 1


def test_batchnorm_cumulative_average_still_matches_pytorch():
    ours, theirs = nn.BatchNorm1d(3, momentum=None), torch.nn.BatchNorm1d(3, momentum=None)
    gen = np.random.default_rng(0)
    for _ in range(3):
        x = gen.standard_normal((5, 3)).astype(np.float32)
        np.testing.assert_allclose(ours(tl.tensor(x)).detach().numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-6)
    assert int(ours.num_batches_tracked.item()) == int(theirs.num_batches_tracked.item()) == 3
