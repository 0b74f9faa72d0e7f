"""tl.save / tl.load: exact round trips, atomic writes, clear errors, and no pickle. Hostile and corrupt
files: test_checkpoint_hostile.py; killed saves, symlinks and permissions: test_checkpoint_files.py."""
import io
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn, optim
from tinylazy import serialization
from tinylazy.serialization import CheckpointError, load, save, writer
from checkpoint_forge import forge, header_of

DTYPES = ["float16", "float32", "float64", "int32", "int64", "uint8", "bool"]


def _array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        out = rng.random(shape) > 0.5
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        out = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    else:
        out = rng.standard_normal(shape) * 1e3
    return np.asarray(out, dtype=dtype)


def _same(a, b):
    """Equal values, dtype and shape (NaN-free inputs, so bit-exact equality)."""
    a = a.numpy() if isinstance(a, tl.Tensor) else a
    b = b.numpy() if isinstance(b, tl.Tensor) else b
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3, 4)])
def test_tensor_and_array_round_trip_exact(dtype, shape, tmp_path, device):
    arr = _array(dtype, shape)
    t = tl.tensor(arr, device=device)
    save({"t": t, "a": arr}, tmp_path / "f")
    out = load(tmp_path / "f")
    assert isinstance(out["t"], tl.Tensor) and out["t"].device == device
    assert type(out["a"]) is np.ndarray
    _same(out["t"], t)
    _same(out["a"], arr)


def test_special_float_values_and_noncontiguous(tmp_path):
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.7976931348623157e308])
    nc = np.arange(24.0).reshape(4, 6)[::2, ::3]                # a non-contiguous view
    big_endian = np.arange(5, dtype=">i4")
    save([x, nc, big_endian, np.asfortranarray(np.arange(6).reshape(2, 3))], tmp_path / "f")
    a, b, c, d = load(tmp_path / "f")
    assert np.array_equal(a, x, equal_nan=True) and np.signbit(a[3])
    np.testing.assert_array_equal(b, nc)
    np.testing.assert_array_equal(c, big_endian)
    np.testing.assert_array_equal(d, np.arange(6).reshape(2, 3))


def test_nested_structures_and_python_values(tmp_path):
    w = tl.randn(3, 2)
    obj = {
        "ints": [0, -1, 2 ** 70], "floats": (1.5, -0.0, float("inf")), "none": None, "flags": [True, False],
        "text": "héllo ✓", "empty": {"list": [], "tuple": (), "dict": {}},
        1: "int key", 2.5: "float key", None: "none key", False: "bool key",
        "np_scalars": [np.float32(1.25), np.int64(-3), np.bool_(True)],
        "nested": [{"w": w, "pair": (w, [w])}],
    }
    save(obj, tmp_path / "f")
    out = load(tmp_path / "f")
    assert out.keys() == obj.keys()
    assert out["ints"] == [0, -1, 2 ** 70] and out["floats"] == (1.5, -0.0, float("inf"))
    assert isinstance(out["floats"], tuple) and str(out["floats"][1]) == "-0.0"
    assert out["none"] is None and out["flags"] == [True, False] and out["text"] == "héllo ✓"
    assert out["empty"] == {"list": [], "tuple": (), "dict": {}}
    assert out[1] == "int key" and out[2.5] == "float key" and out[None] == "none key" and out[False] == "bool key"
    assert [type(v) for v in out["np_scalars"]] == [np.float32, np.int64, np.bool_]
    assert out["np_scalars"][0] == np.float32(1.25)
    inner = out["nested"][0]
    _same(inner["w"], w)
    assert inner["w"].array is inner["pair"][0].array is inner["pair"][1][0].array   # one array, stored once


def test_parameters_saved_as_plain_tensors(tmp_path):
    p = nn.Parameter(tl.randn(2, 3))
    save({"p": p}, tmp_path / "f")
    out = load(tmp_path / "f")["p"]
    assert type(out) is tl.Tensor and out.requires_grad
    _same(out.detach(), p.detach())


def test_model_and_optimizer_state_round_trip(tmp_path):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = optim.Adam(net.parameters(), lr=0.01, amsgrad=True)
    for _ in range(2):
        opt.zero_grad()
        net(tl.randn(5, 4)).square().sum().backward()
        opt.step()
    save({"model": net.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt")
    ckpt = load(tmp_path / "ckpt")
    sd, osd = net.state_dict(), opt.state_dict()
    assert list(ckpt["model"]) == list(sd)
    for k in sd:
        _same(ckpt["model"][k], sd[k])
    assert ckpt["opt"]["param_groups"] == osd["param_groups"]
    assert list(ckpt["opt"]["state"]) == [0, 1, 2, 3]                    # int keys stay ints
    for k, st in osd["state"].items():
        for name, v in st.items():
            _same(ckpt["opt"]["state"][k][name], v)
    net2 = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
    net2.load_state_dict(ckpt["model"])
    opt2 = optim.Adam(net2.parameters())
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.param_groups[0]["amsgrad"] is True and opt2.param_groups[0]["betas"] == (0.9, 0.999)


def test_file_objects(tmp_path):
    buf = io.BytesIO()
    save([tl.arange(4), "x"], buf)
    buf.seek(0)
    out = load(buf)
    _same(out[0], tl.arange(4))
    assert out[1] == "x"


# --- atomic writes ----------------------------------------------------------------------------------------
def test_failure_mid_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    save({"v": tl.tensor([1.0, 2.0])}, path)
    before = path.read_bytes()
    calls = []

    def failing(fh, data):                  # write the first array, then fail as a full disk would
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(1)
        fh.write(memoryview(data))

    monkeypatch.setattr(writer, "_write_array", failing)
    with pytest.raises(OSError, match="No space"):
        save({"a": tl.ones(1000), "b": tl.zeros(1000)}, path)
    assert calls and path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt"]                     # the temporary file was removed
    monkeypatch.undo()
    _same(load(path)["v"], tl.tensor([1.0, 2.0]))


def test_interrupt_mid_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    save([1, 2, 3], path)

    def interrupted(fh, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save([tl.ones(3)], path)
    assert load(path) == [1, 2, 3] and os.listdir(tmp_path) == ["ckpt"]


def test_unsupported_object_fails_before_touching_the_file(tmp_path):
    path = tmp_path / "ckpt"
    save("old", path)
    with pytest.raises(TypeError, match=r"type set at \['model'\]\['layers'\]\[1\]"):
        save({"model": {"layers": [tl.ones(2), {1, 2}]}}, path)
    with pytest.raises(TypeError, match=r"dict key of type tuple"):
        save({(1, 2): 3}, path)
    with pytest.raises(TypeError, match="dtype object"):
        save([np.array([object()])], path)
    cyc = []
    cyc.append(cyc)
    with pytest.raises(ValueError, match="cycle"):
        save(cyc, path)
    assert load(path) == "old" and os.listdir(tmp_path) == ["ckpt"]


def test_lazy_parameter_error(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"uninitialized \(lazy\) parameter at \['1.weight'\]: run one forward "
                                         "first"):
        save(net.state_dict(), tmp_path / "f")
    assert not (tmp_path / "f").exists()
    with pytest.raises(ValueError, match="meta tensor"):
        save(tl.empty(2, device="meta"), tmp_path / "f")


# --- reading bad files ------------------------------------------------------------------------------------
def test_truncated_files(tmp_path):
    path = tmp_path / "ckpt"
    save({"w": tl.randn(100), "b": [1, 2]}, path)
    data = path.read_bytes()
    for cut in (0, 4, 10, 30, len(data) // 2, len(data) - 1):
        (tmp_path / "cut").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load(tmp_path / "cut")
    (tmp_path / "long").write_bytes(data + b"junk")
    with pytest.raises(CheckpointError, match="unexpected bytes"):
        load(tmp_path / "long")


@pytest.mark.parametrize("content, what", [
    (b"hello world, this is text", "starts with"),
    (b"PK\x03\x04" + b"\0" * 40, "zip archive"),
    (b"\x93NUMPY\x01\x00" + b"\0" * 40, "npy"),
])
def test_foreign_files(tmp_path, content, what):
    (tmp_path / "f").write_bytes(content)
    with pytest.raises(CheckpointError, match=f"not a tinylazy checkpoint.*{what}"):
        load(tmp_path / "f")


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_is_rejected_and_never_run(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: ran.append(1))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: ran.append(1))
    (tmp_path / "p").write_bytes(pickle.dumps({"w": np.ones(3), "evil": _Boom()}, protocol=4))
    with pytest.raises(CheckpointError, match="pickle"):
        load(tmp_path / "p")
    assert not ran


def test_corrupt_header_and_table(tmp_path):
    path = tmp_path / "ckpt"
    save({"w": tl.ones(4)}, path)
    header, data = header_of(path)
    header["arrays"][0]["dtype"] = "object"
    with pytest.raises(CheckpointError, match="dtype 'object', which is not allowed"):
        load(forge(tmp_path / "bad", header, data))
    header["arrays"][0].update(dtype="float32", shape=[10 ** 12])       # a table that claims a huge array
    with pytest.raises(CheckpointError, match="outside the data section"):
        load(forge(tmp_path / "bad", header, data))                      # refused before allocating anything
    bad = bytearray(path.read_bytes())
    bad[8] = 99                                                          # a future format version
    (tmp_path / "bad").write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="version 99, newer than"):
        load(tmp_path / "bad")


# --- map_location -----------------------------------------------------------------------------------------
def test_map_location(tmp_path, device):
    path = tmp_path / "f"
    save({"t": tl.arange(6, device=device).reshape(2, 3), "a": np.ones(2)}, path)
    for where in ("cpu", device, tl.device(device)):
        out = load(path, map_location=where)
        assert out["t"].device == where and type(out["a"]) is np.ndarray
        _same(out["t"].cpu(), tl.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="map_location"):
        load(path, map_location=3)
    assert load(path, weights_only=True)["t"].device == device


def test_cuda_checkpoint_without_cuda_says_map_location(tmp_path, monkeypatch):
    if tl.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    path = tmp_path / "f"
    save({"t": tl.ones(2)}, path)
    header, data = header_of(path)                    # a file as a GPU machine would write it
    header["root"]["v"][0]["dev"] = "cuda:0"
    forge(path, header, data)
    with pytest.raises(RuntimeError, match=r"saved on cuda:0.*map_location='cpu'"):
        load(path)
    _same(load(path, map_location="cpu")["t"], tl.ones(2))


# --- container types and old files ------------------------------------------------------------------------
class _MyDict(dict):
    pass


def test_ordered_dict_stays_ordered_dict_and_dict_stays_dict(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sd = net.state_dict()
    assert type(sd) is OrderedDict
    obj = {"sd": sd, "plain": {"b": 1, "a": 2}, "nested": [OrderedDict([("z", OrderedDict(y=1)), ("a", {})])],
           "sub": _MyDict(k=1)}
    save(obj, tmp_path / "f")
    out = load(tmp_path / "f")
    assert type(out) is dict and type(out["sd"]) is OrderedDict and list(out["sd"]) == list(sd)
    assert type(out["plain"]) is dict and list(out["plain"]) == ["b", "a"]
    inner = out["nested"][0]
    assert type(inner) is OrderedDict and type(inner["z"]) is OrderedDict and type(inner["a"]) is dict
    assert type(out["sub"]) is dict and out["sub"] == {"k": 1}                  # other subclasses: their base
    net2 = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2))
    net2.load_state_dict(out["sd"])                                              # lazy model, from the file
    _same(net2(tl.ones(1, 3)).detach(), net(tl.ones(1, 3)).detach())


def test_version_1_files_still_load():
    """tests/data/checkpoint_v1.tlz was written by tinylazy's format-1 writer (no checksums, no "odict": its
    OrderedDict was saved as a dict). It loads through the same header checks."""
    out = load(os.path.join(os.path.dirname(__file__), "data", "checkpoint_v1.tlz"))
    w = np.arange(6, dtype=np.float32).reshape(2, 3) / 8
    assert list(out) == ["model", "opt", "epoch", "arr", "s", "empty", "tied", "name"]
    assert type(out["model"]) is dict and list(out["model"]) == ["0.weight", "0.bias"]
    _same(out["model"]["0.weight"].detach(), w)
    assert out["model"]["0.weight"].requires_grad and out["tied"][0] is not out["model"]["0.weight"]
    assert out["tied"][0].array is out["model"]["0.weight"].array and out["tied"][1:] == (None, True)
    _same(out["model"]["0.bias"], tl.tensor([0.5, -0.5]))
    _same(out["opt"]["state"][0]["step"], tl.tensor(3.0))
    assert out["opt"]["param_groups"] == [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0, 1]}]
    assert out["epoch"] == 7 and out["name"] == "v1" and out["s"] == np.float32(1.5)
    _same(out["arr"], np.arange(5))
    _same(out["empty"], np.zeros((0, 3)))


def test_resaving_writes_the_current_version(tmp_path):
    out = load(os.path.join(os.path.dirname(__file__), "data", "checkpoint_v1.tlz"))
    save(out, tmp_path / "f")
    assert (tmp_path / "f").read_bytes()[8:12] == serialization.VERSION.to_bytes(4, "little") == b"\2\0\0\0"
    again = load(tmp_path / "f")
    _same(again["model"]["0.weight"].detach(), out["model"]["0.weight"].detach())
