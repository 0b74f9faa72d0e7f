"""`tl.save_safetensors` / `tl.load_safetensors` (issue 15, item 9): weights move between PyTorch and
tinylazy in the safetensors format; a PyTorch checkpoint materializes a lazy tinylazy LeNet."""
import sys

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn
from tinylazy.demo import lenet

from helpers import noncontiguous, torch

pytest.importorskip("safetensors")


def torch_lenet():
    """The demo's LeNet (tinylazy.demo.lenet) written with PyTorch's sized layers: the same state_dict keys."""
    th = torch()
    n = th.nn
    return n.Sequential(
        n.Conv2d(1, 6, kernel_size=5, padding=2), n.BatchNorm2d(6), n.ReLU(), n.MaxPool2d(2, 2),
        n.Conv2d(6, 16, kernel_size=5), n.BatchNorm2d(16), n.ReLU(), n.MaxPool2d(2, 2),
        n.Flatten(),
        n.Linear(16 * 5 * 5, 120), n.BatchNorm1d(120), n.ReLU(),
        n.Linear(120, 84), n.BatchNorm1d(84), n.ReLU(),
        n.Linear(84, 10))


def _images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, 1, 28, 28)).astype(np.float32)


def test_a_torch_checkpoint_materializes_a_lazy_lenet_with_the_same_outputs(tmp_path):
    th = torch()
    from safetensors.torch import save_file
    th.manual_seed(0)
    ref = torch_lenet()
    with th.no_grad():
        for seed in range(3):                          # non-trivial running statistics
            ref(th.from_numpy(_images(16, seed)))
    ref.eval()
    path = tmp_path / "torch_lenet.safetensors"
    save_file(ref.state_dict(), str(path))

    net = lenet()
    assert net.has_uninitialized_params()
    sd = tl.load_safetensors(path)
    assert set(sd) == set(ref.state_dict())
    net.load_state_dict(sd)                            # materializes every lazy layer from the shapes
    assert not net.has_uninitialized_params() and net[9].in_features == 400
    net.eval()
    x = _images(8, seed=5)
    with th.no_grad():
        want = ref(th.from_numpy(x)).numpy()
    np.testing.assert_allclose(net(tl.tensor(x)).detach().numpy(), want, rtol=1e-4, atol=1e-5)
    assert int(net[1].num_batches_tracked) == 3 and net[1].num_batches_tracked.dtype == tl.int64


def test_a_tinylazy_checkpoint_loads_into_torch_with_the_same_outputs(tmp_path):
    th = torch()
    from safetensors.torch import load_file
    net = lenet()
    for seed in range(3):
        net(tl.tensor(_images(16, seed)))              # materializes, then updates the running statistics
    net.eval()
    path = tmp_path / "tl_lenet.safetensors"
    tl.save_safetensors(net.state_dict(), path)

    ref = torch_lenet()
    ref.load_state_dict(load_file(str(path)), strict=True)
    ref.eval()
    x = _images(8, seed=6)
    with th.no_grad():
        want = ref(th.from_numpy(x)).numpy()
    np.testing.assert_allclose(net(tl.tensor(x)).detach().numpy(), want, rtol=1e-4, atol=1e-5)


def test_dtypes_shapes_names_and_non_contiguous_arrays_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    values = {
        "float16": rng.normal(size=(2, 3)).astype(np.float16),
        "float32.nested.name": rng.normal(size=(4,)).astype(np.float32),
        "float64 with spaces": rng.normal(size=(2, 2, 2)),
        "int8": rng.integers(-100, 100, size=(5,)).astype(np.int8),
        "int16": rng.integers(-1000, 1000, size=(3, 1)).astype(np.int16),
        "int32": rng.integers(-10 ** 6, 10 ** 6, size=(2,)).astype(np.int32),
        "int64.scalar": np.array(7, np.int64),
        "uint8": rng.integers(0, 255, size=(6,)).astype(np.uint8),
        "bool": rng.integers(0, 2, size=(3, 2)).astype(bool),
        "empty": np.zeros((0, 3), np.float32),
        "ünïcode": np.arange(3, dtype=np.float32),
    }
    sd = {k: tl.tensor(v) for k, v in values.items()}
    sd["transposed"] = tl.tensor(rng.normal(size=(3, 4)).astype(np.float32)).T
    sd["strided"] = tl.from_numpy(noncontiguous(rng.normal(size=(2, 5)).astype(np.float32)))
    sd["raw array"] = np.arange(4, dtype=np.int64)[::-1]
    sd["big endian"] = np.arange(3, dtype=">f4")
    values.update(transposed=sd["transposed"].numpy(), strided=sd["strided"].numpy())
    values.update({"raw array": sd["raw array"], "big endian": sd["big endian"].astype("<f4")})
    assert not sd["transposed"].array.flags.c_contiguous and not sd["strided"].array.flags.c_contiguous
    path = tmp_path / "all.safetensors"
    tl.save_safetensors(sd, path)
    back = tl.load_safetensors(path)
    assert set(back) == set(values)
    for name, want in values.items():
        got = back[name]
        assert isinstance(got, tl.Tensor) and got.device == "cpu"
        assert got.dtype == want.dtype.newbyteorder("="), name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got.numpy(), want)
    back["float16"].fill_(1)                           # loaded tensors are writable
    assert back["float16"].numpy().min() == 1


def test_torch_reads_what_tinylazy_writes_for_every_dtype(tmp_path):
    th = torch()
    from safetensors.torch import load_file
    sd = {"f": tl.rand(2, 3), "d": tl.rand(3, dtype=tl.float64), "h": tl.rand(2).half(),
          "l": tl.arange(4), "b": tl.tensor([True, False])}
    tl.save_safetensors(sd, tmp_path / "x.safetensors")
    theirs = load_file(str(tmp_path / "x.safetensors"))
    for name, t in sd.items():
        assert theirs[name].dtype == getattr(th, str(t.dtype)) and tuple(theirs[name].shape) == t.shape
        np.testing.assert_array_equal(theirs[name].numpy(), t.numpy())
    assert th.equal(theirs["l"], th.arange(4))


def test_load_to_a_device_and_metadata(tmp_path, device):
    path = tmp_path / "m.safetensors"
    tl.save_safetensors({"w": tl.ones(2, 2)}, path, metadata={"format": "pt"})
    sd = tl.load_safetensors(path, device=device)
    assert sd["w"].device == device and sd["w"].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_saving_a_lazy_parameter_or_a_non_tensor_raises_clearly(tmp_path):
    net = nn.Sequential(nn.LazyLinear(3))
    with pytest.raises(RuntimeError, match=r"save_safetensors: '0\.weight' is uninitialized.*forward"):
        tl.save_safetensors(net.state_dict(), tmp_path / "lazy.safetensors")
    with pytest.raises(TypeError, match="'x' is a list, expected a tensor"):
        tl.save_safetensors({"x": [1, 2]}, tmp_path / "list.safetensors")
    with pytest.raises(RuntimeError, match="meta"):
        tl.save_safetensors({"m": tl.empty(2, device="meta")}, tmp_path / "meta.safetensors")
    assert not (tmp_path / "lazy.safetensors").exists()


def test_without_the_package_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)         # as if it were not installed
    with pytest.raises(ImportError, match="pip install safetensors"):
        tl.save_safetensors({"w": tl.ones(1)}, tmp_path / "w.safetensors")
    with pytest.raises(ImportError, match="pip install safetensors"):
        tl.load_safetensors(tmp_path / "w.safetensors")
