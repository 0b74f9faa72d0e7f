"""Tensor creation, attributes, conversions, devices, dtypes, seeding and repr."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

import tinylazy as tl


# --- creation --------------------------------------------------------------------------------------
def test_tensor_from_python_values_uses_default_dtypes():
    assert tl.tensor([1.0, 2.0]).dtype == tl.float32
    assert tl.tensor([1, 2]).dtype == tl.int64
    assert tl.tensor([True, False]).dtype == tl.bool
    assert tl.tensor(3.5).shape == () and tl.tensor(3.5).item() == 3.5
    tl.set_default_dtype(tl.float64)
    assert tl.tensor([1.0]).dtype == tl.float64 and tl.zeros(2).dtype == tl.float64
    assert tl.get_default_dtype() == tl.float64


def test_tensor_from_numpy_keeps_dtype_and_copies():
    a = np.arange(4, dtype=np.float64)
    t = tl.tensor(a)
    assert t.dtype == tl.float64
    a[0] = 100
    assert t[0].item() == 0.0 if hasattr(tl.Tensor, "__getitem__") else True
    assert t.array[0] == 0.0


def test_from_numpy_and_as_tensor_share_memory():
    a = np.zeros(3, dtype=np.float32)
    t = tl.from_numpy(a)
    a[1] = 5
    assert t.tolist() == [0.0, 5.0, 0.0]
    assert tl.as_tensor(a).array is a
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray"):
        tl.from_numpy([1, 2])


@pytest.mark.parametrize("maker", [tl.zeros, tl.ones, tl.empty, tl.rand, tl.randn])
def test_size_spellings(maker, device):
    for t in (maker(2, 3, device=device), maker((2, 3), device=device), maker([2, 3], device=device),
              maker(size=(2, 3), device=device)):
        assert t.shape == (2, 3) and t.dtype == tl.float32 and t.device == device
    assert maker(device=device).shape == ()
    assert maker(2, dtype=tl.float64, device=device).dtype == tl.float64
    assert maker(2, requires_grad=True, device=device).requires_grad


def test_size_errors_are_clear():
    with pytest.raises(ValueError, match="non-negative"):
        tl.zeros(-1)
    with pytest.raises(TypeError, match="integers"):
        tl.ones(2.5)


def test_filled_and_like_makers(device):
    x = tl.full((2, 2), 7.0, device=device)
    assert x.tolist() == [[7.0, 7.0], [7.0, 7.0]] and x.dtype == tl.float32
    assert tl.full((1,), 3).dtype == tl.int64
    for fn, v in ((tl.zeros_like, 0.0), (tl.ones_like, 1.0)):
        y = fn(x)
        assert y.shape == x.shape and y.device == x.device and y.tolist()[0][0] == v
    assert tl.full_like(x, 2.5).tolist()[1][1] == 2.5
    assert tl.empty_like(x, dtype=tl.float64).dtype == tl.float64


def test_ranges(device):
    assert tl.arange(5, device=device).tolist() == [0, 1, 2, 3, 4]
    assert tl.arange(1, 4).dtype == tl.int64
    np.testing.assert_allclose(tl.arange(0, 1, 0.25).numpy(), [0, 0.25, 0.5, 0.75])
    assert tl.arange(0, 1, 0.25).dtype == tl.float32
    np.testing.assert_allclose(tl.linspace(0, 1, 5, device=device).numpy(), [0, 0.25, 0.5, 0.75, 1])
    assert tl.eye(3, device=device).tolist()[1] == [0.0, 1.0, 0.0]
    assert tl.eye(2, 3).shape == (2, 3)


def test_random_makers_are_seeded(device):
    tl.manual_seed(42)
    a = (tl.rand(5, device=device).numpy(), tl.randn(5, device=device).numpy(),
         tl.randint(0, 10, (5,), device=device).numpy(), tl.normal(1.0, 2.0, size=(5,), device=device).numpy())
    tl.manual_seed(42)
    b = (tl.rand(5, device=device).numpy(), tl.randn(5, device=device).numpy(),
         tl.randint(0, 10, (5,), device=device).numpy(), tl.normal(1.0, 2.0, size=(5,), device=device).numpy())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(tl.rand(5, device=device).numpy(), a[0])
    r = tl.randint(3, 7, (1000,)).numpy()
    assert r.min() >= 3 and r.max() <= 6 and r.dtype == np.int64
    u = tl.rand(10000).numpy()
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02


def test_normal_with_tensor_mean():
    m = tl.tensor([0.0, 100.0])
    out = tl.normal(m, 1.0)
    assert out.shape == (2,) and abs(out.tolist()[1] - 100) < 10


# --- attributes and conversions --------------------------------------------------------------------
def test_attributes(device):
    t = tl.zeros(2, 3, 4, device=device)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3 and t.numel() == 24
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.device == device and str(t.device) in (device, device + ":0")
    assert t.is_leaf and t.grad is None and t.grad_fn is None and not t.requires_grad
    assert len(t) == 2
    with pytest.raises(IndexError, match="size: dimension 3 is out of range"):
        t.size(3)


def test_item_float_int_bool():
    t = tl.tensor([2.5])
    assert t.item() == 2.5 and float(t) == 2.5 and int(t) == 2 and bool(t)
    with pytest.raises(ValueError, match="one-element"):
        tl.ones(2).item()
    assert [1, 2, 3][tl.tensor(1)] == 2


def test_numpy_and_array_protocols():
    t = tl.tensor([[1.0, 2.0]])
    assert isinstance(t.numpy(), np.ndarray) and t.numpy().shape == (1, 2)
    assert np.asarray(t).tolist() == [[1.0, 2.0]]
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        tl.ones(2, requires_grad=True).numpy()
    assert np.from_dlpack(t).tolist() == [[1.0, 2.0]]


def test_dtype_conversions_are_differentiable():
    x = tl.tensor([1.5, 2.5], requires_grad=True)
    for name, dtype in (("double", tl.float64), ("half", tl.float16), ("float", tl.float32)):
        assert getattr(x, name)().dtype == dtype
    assert x.float() is x
    assert x.long().tolist() == [1, 2] and x.int().dtype == tl.int32 and x.bool().dtype == tl.bool
    y = x.double() * 2.0
    y.backward(tl.ones(2, dtype=tl.float64))
    assert x.grad.dtype == tl.float32 and x.grad.tolist() == [2.0, 2.0]
    assert x.to(tl.float64, copy=True).dtype == tl.float64
    assert x.to("cpu") is x
    assert x.to(tl.zeros(1, dtype=tl.float64)).dtype == tl.float64


def test_detach_clone():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert d.array is x.array and not d.requires_grad
    c = x.clone()
    assert c.array is not x.array and c.requires_grad and not c.is_leaf
    (c * 3.0).backward(tl.ones(2))
    assert x.grad.tolist() == [3.0, 3.0]


def test_inplace_fillers(device):
    t = tl.empty(3, device=device)
    assert t.fill_(2.0).tolist() == [2.0, 2.0, 2.0]
    assert t.zero_().tolist() == [0.0, 0.0, 0.0]
    t.copy_(tl.tensor([1.0, 2.0, 3.0], device=device))
    assert t.tolist() == [1.0, 2.0, 3.0]
    tl.manual_seed(0)
    u = tl.empty(1000, device=device).uniform_(-2, 2).numpy()
    assert -2 <= u.min() and u.max() < 2
    n = tl.empty(10000, device=device).normal_(3.0, 0.5).numpy()
    assert abs(n.mean() - 3.0) < 0.05 and abs(n.std() - 0.5) < 0.05


def test_requires_grad_underscore_and_leaf_rules():
    x = tl.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    y = x * 2
    with pytest.raises(RuntimeError, match="detach"):
        y.requires_grad_(False)


def test_repr_like_pytorch():
    assert repr(tl.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tl.tensor([1, 2])) == "tensor([1, 2])"
    assert "requires_grad=True" in repr(tl.ones(1, requires_grad=True))
    assert "dtype=tl.float64" in repr(tl.ones(1, dtype=tl.float64))
    assert "grad_fn=<MulBackward0>" in repr(tl.ones(1, requires_grad=True) * 2)
    assert repr(tl.empty(2, 3, device="meta")) == "tensor(..., device='meta', size=(2, 3))"


def test_tensor_is_hashable_by_identity():
    a, b = tl.ones(1), tl.ones(1)
    assert len({a, b}) == 2


def test_pickle_roundtrip():
    t = tl.tensor([[1.0, 2.0]])
    u = pickle.loads(pickle.dumps(t.array))
    assert u.tolist() == [[1.0, 2.0]]


# --- devices ---------------------------------------------------------------------------------------
def test_device_parsing_and_equality():
    assert tl.device("cpu") == "cpu" and tl.device("cuda") == "cuda:0" and tl.device("cuda:1") == "cuda:1"
    assert tl.device("cuda") is tl.device("cuda:0")
    assert tl.device("cpu") != "cuda" and tl.device("meta") == "meta"
    assert repr(tl.device("cuda:1")) == "device(type='cuda', index=1)"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tl.device("tpu")


def test_cuda_without_gpu_says_so():
    if tl.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        tl.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        tl.ones(2).cuda()


def test_import_prints_nothing_and_needs_no_cupy():
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['cupy'] = None; import tinylazy as tl; "
                          "print(tl.cuda.is_available())"], capture_output=True, text=True, check=True)
    assert out.stdout == "False\n" and out.stderr == ""


def test_move_between_devices(device):
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(device)
    assert y.device == device
    (y * 2.0).sum().backward() if hasattr(tl.Tensor, "sum") else (y * 2.0).backward(tl.ones(2, device=device))
    assert x.grad.device == "cpu" and x.grad.tolist() == [2.0, 2.0]


def test_comparing_with_none_is_plain_python():
    t = tl.ones(2)
    assert (t == None) is False and (t != None) is True  # noqa: E711
    assert t in [None, t]
