"""tl.load on hostile and corrupt files: each raises tl.CheckpointError (a ValueError) naming what is wrong,
cheaply (the header is checked before any data is read), and every changed byte is caught by a checksum."""
import io
import random
import struct
import tracemalloc
from collections import OrderedDict

import numpy as np
import pytest

import tinylazy as tl
from tinylazy.serialization import fileformat
from checkpoint_forge import MAGIC, forge, header_of

MiB = 1 << 20


def _table(*entries):
    """A table of float32 arrays: entries are (shape, offset)."""
    return [{"dtype": "float32", "shape": shape, "offset": offset} for shape, offset in entries]


def _refs(n):
    return [{"$": "ndarray", "a": i} for i in range(n)]


def _refused(path, match):
    with pytest.raises(tl.CheckpointError, match=match) as info:
        tl.load(path)
    assert isinstance(info.value, ValueError) and str(path) in str(info.value)
    return info.value


def test_checkpoint_error_is_exported():
    assert tl.CheckpointError is fileformat.CheckpointError and issubclass(tl.CheckpointError, ValueError)


# --- the array table: checked before any data is read ----------------------------------------------------
def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_one_region_listed_4096_times_is_refused_cheaply(tmp_path):
    """The issue's file: 1 MiB of data, a table that lists it 4,096 times (4 GiB if each were allocated)."""
    header = {"data_bytes": MiB, "arrays": _table(*[([MiB // 4], 0)] * 4096), "root": _refs(4096)}
    path = forge(tmp_path / "f", header, bytes(MiB))
    peak = _peak_bytes(lambda: _refused(path, r"array 1 of the table \(bytes 0..1048576\) overlaps or precedes "
                                              "array 0"))
    assert peak < 16 * MiB                          # the header is parsed; no array is allocated


def test_100000_entries_are_refused(tmp_path):
    """The issue's other file: 100,000 entries over 1 KiB of data (~98 GiB if each were allocated)."""
    header = {"data_bytes": 1024, "arrays": _table(*[([256], 0)] * 100_000), "root": _refs(100_000)}
    _refused(forge(tmp_path / "f", header, bytes(1024)), r"array 1 of the table \(bytes 0..1024\) overlaps")


@pytest.mark.parametrize("field, value, match", [
    ("shape", [2.9], r"shape \[2.9\]"), ("shape", ["16"], r"shape \['16'\]"), ("shape", [-1], r"shape \[-1\]"),
    ("shape", [True], r"shape \[True\]"), ("shape", "16", "shape '16'"), ("shape", [None], "shape"),
    ("shape", [1] * 65, "at most 64"), ("shape", [2 ** 40, 2 ** 40, 0], "absurd shape"),
    ("offset", -0.5, "offset -0.5"), ("offset", "0", "offset '0'"), ("offset", 1.0, "offset 1.0"),
    ("offset", True, "offset True"), ("offset", -64, "offset -64"), ("offset", None, "offset None"),
    ("dtype", "object", "dtype 'object', which is not allowed"), ("dtype", "<f4", "dtype '<f4'"),
    ("dtype", 5, "dtype 5"), ("dtype", ["float32"], r"dtype \['float32'\]"), ("dtype", "float32 ", "dtype"),
])
def test_malformed_table_entries(tmp_path, field, value, match):
    entry = {"dtype": "float32", "shape": [16], "offset": 0}
    entry[field] = value
    path = forge(tmp_path / "f", {"data_bytes": 64, "arrays": [entry], "root": _refs(1)}, bytes(64))
    _refused(path, f"array 0 of the table .*{match}")


@pytest.mark.parametrize("entries, data_bytes, match", [
    ([([16], 0), ([16], 32)], 128, "overlaps or precedes array 0"),                     # overlap
    ([([16], 64), ([16], 0)], 128, "starts at byte 64, but .* is 0: bytes 0..64 belong to no array"),
    ([([16], 0), ([16], 128)], 192, "bytes 64..128 belong to no array"),                # a gap
    ([([16], 0), ([4], 66)], 128, "starts at byte 66"),                                 # misaligned
    ([([16], 0), ([16], 64)], 100, "outside the data section"),
    ([([16], 0)], 128, "data section has 128 bytes, but the arrays end at byte 64"),    # uncovered tail
    ([([2 ** 50], 0)], 64, "outside the data section"),
    ([], 64, "data section has 64 bytes, but the arrays end at byte 0"),
])
def test_table_must_cover_the_data_section_exactly(tmp_path, entries, data_bytes, match):
    header = {"data_bytes": data_bytes, "arrays": _table(*entries), "root": _refs(len(entries))}
    _refused(forge(tmp_path / "f", header, bytes(data_bytes)), match)


def test_every_entry_must_be_referenced(tmp_path):
    header = {"data_bytes": 128, "arrays": _table(([16], 0), ([16], 64)), "root": _refs(1)}
    _refused(forge(tmp_path / "f", header, bytes(128)), r"1 arrays of the table are referenced by nothing \(array 1\)")


@pytest.mark.parametrize("data_bytes", [-1, 1.5, "64", True, None, 10 ** 30])
def test_bad_data_bytes(tmp_path, data_bytes):
    header = {"data_bytes": data_bytes, "arrays": [], "root": None}
    _refused(forge(tmp_path / "f", header), "data_bytes must be|belong to no array|truncated")


# --- the header: bounded, and every part checked ----------------------------------------------------------
def test_deeply_nested_header(tmp_path):
    for depth in (fileformat.MAX_JSON_DEPTH + 1, 100_000):
        raw = b'{"data_bytes":0,"arrays":[],"root":' + b"[" * depth + b"]" * depth + b"}"
        _refused(forge(tmp_path / "f", raw), f"nests {depth + 1} levels deep")
    brackets_in_strings = b'{"data_bytes":0,"arrays":[],"root":"' + b"[{" * 10_000 + b'\\"["}'
    assert tl.load(forge(tmp_path / "f", brackets_in_strings)) == "[{" * 10_000 + '"['


def test_nesting_limit_is_the_same_in_save_and_load(tmp_path):
    def nested(levels):
        obj = tl.ones(1)
        for i in range(levels):
            obj = {"k": obj} if i % 3 == 0 else (obj,) if i % 3 == 1 else OrderedDict(v=obj)
        return obj

    deepest = nested(fileformat.MAX_NESTING)
    tl.save(deepest, tmp_path / "f")
    out = tl.load(tmp_path / "f")
    for _ in range(fileformat.MAX_NESTING):
        out = out[0] if isinstance(out, tuple) else next(iter(out.values()))
    assert isinstance(out, tl.Tensor)
    with pytest.raises(ValueError, match="nests more than 100 containers deep"):
        tl.save(nested(fileformat.MAX_NESTING + 1), tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_huge_integers(tmp_path):
    raw = b'{"data_bytes":0,"arrays":[],"root":' + b"9" * 5000 + b"}"
    _refused(forge(tmp_path / "f", raw), "an integer with 5000 digits")
    raw = b'{"data_bytes":0,"arrays":[],"root":' + b"1." + b"0" * 5000 + b"}"
    _refused(forge(tmp_path / "f", raw), "a number written with 5002 characters")
    ok = -(10 ** 1000 - 1)
    tl.save([ok, 2 ** 70], tmp_path / "g")
    assert tl.load(tmp_path / "g") == [ok, 2 ** 70]
    with pytest.raises(ValueError, match="more than 1000 digits"):
        tl.save({"n": 10 ** 1000}, tmp_path / "h")


@pytest.mark.parametrize("raw, match", [
    (b"\xff\xfe{}", "not UTF-8"), (b'{"data_bytes":0,', "not valid JSON"), (b"[1, 2]", "found list"),
    (b'{"data_bytes":0,"arrays":[]}', r"found \['arrays', 'data_bytes'\]"),
    (b'{"data_bytes":0,"arrays":[],"root":1,"x":2}', "data_bytes, arrays and root"),
    (b'{"data_bytes":0,"arrays":[],"root":1,"root":2}', "repeats a key"),
    (b'{"data_bytes":0,"arrays":{},"root":1}', "table must be a list"),
])
def test_malformed_header(tmp_path, raw, match):
    _refused(forge(tmp_path / "f", raw), match)


def test_absurd_header_length(tmp_path):
    blob = struct.pack("<8sIQI", MAGIC, 2, 2 ** 62, 0) + b"{}"
    (tmp_path / "f").write_bytes(blob)
    _refused(tmp_path / "f", "claims a header of .* bytes, more than tl.load reads")
    (tmp_path / "f").write_bytes(struct.pack("<8sIQI", MAGIC, 2, 1000, 0) + b"{}")
    _refused(tmp_path / "f", "truncated: the header needs 1024 bytes, the file has 26")
    (tmp_path / "f").write_bytes(struct.pack("<8sIQI", MAGIC, 0, 2, 0) + b"{}")
    _refused(tmp_path / "f", "format version 0 does not exist")


def _tree_file(tmp_path, root, arrays=1):
    header = {"data_bytes": 64 * arrays, "arrays": _table(*[([4], 64 * i) for i in range(arrays)]), "root": root}
    return forge(tmp_path / "f", header, bytes(64 * arrays))


@pytest.mark.parametrize("dev", ["cuda:x", "tpu", "cuda:-1", "cuda:01", "cpu:0", "meta", "cuda:99999", " cpu",
                                 "cuda:٣", 5, None, ["cpu"]])
def test_bad_device_strings(tmp_path, dev):
    _refused(_tree_file(tmp_path, {"$": "tensor", "a": 0, "dev": dev, "rg": False}),
             rf"device {dev!r} is not one of 'cpu...' or 'cuda...'".replace("[", r"\[").replace("]", r"\]"))
    _refused(_tree_file(tmp_path, {"$": "cupy", "a": 0, "dev": "cpu"}), "device 'cpu' is not one of 'cuda...'")


@pytest.mark.parametrize("root, match", [
    ({"$": "dict", "k": [[1]], "v": [1]}, "dict key must be .* found list .unhashable"),
    ({"$": "dict", "k": [{"$": "tuple", "v": []}], "v": [1]}, "found dict .unhashable"),
    ({"$": "dict", "k": ["a", "a"], "v": [1, 2]}, "dict key 'a' appears twice"),
    ({"$": "dict", "k": [1, True], "v": [1, 2]}, "dict key True appears twice"),
    ({"$": "dict", "k": ["a"], "v": [1, 2]}, "two lists of the same length"),
    ({"$": "odict", "k": "ab", "v": "ab"}, "two lists"),
    ({"$": "tuple", "v": {"a": 1}}, "tuple node's v must be a list"),
    ({"$": "set", "v": []}, "unknown node type 'set'"), ({"a": 1}, "unknown node type None"),
    ({"$": 1}, "unknown node type 1"), ({"$": ["dict"], "k": [], "v": []}, r"unknown node type \['dict'\]"),
    ({"$": "tensor", "a": 0, "dev": "cpu"}, r"exactly the fields \['\$', 'a', 'dev', 'rg'\]"),
    ({"$": "ndarray", "a": 0, "code": "import os"}, "exactly the fields"),
    ({"$": "tensor", "a": 0, "dev": "cpu", "rg": 1}, "rg.* must be true or false, found 1"),
    ({"$": "ndarray", "a": True}, "array index True is not one of the table's 1 arrays"),
    ({"$": "ndarray", "a": 1}, "array index 1"), ({"$": "ndarray", "a": -1}, "array index -1"),
    ({"$": "ndarray", "a": 0.0}, "array index 0.0"), ({"$": "ndarray", "a": "0"}, "array index '0'"),
    ({"$": "scalar", "a": 0}, r"0-d array, but array 0 has shape \(4,\)"),
    ([{"$": "ndarray", "a": 0}, {"x": {"$": "bad"}}], r"unknown node type None at \[1\]"),
    ({"$": "dict", "k": ["w"], "v": [{"$": "tensor", "a": 0, "dev": "gpu", "rg": False}]}, r"at \['w'\]"),
])
def test_malformed_object_tree(tmp_path, root, match):
    _refused(_tree_file(tmp_path, root), match)


def test_foreign_and_empty_files(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    _refused(tmp_path / "f", "truncated: the file is empty")
    (tmp_path / "f").write_bytes(MAGIC[:5])
    _refused(tmp_path / "f", "truncated")


# --- checksums: every changed byte is an error ------------------------------------------------------------
def _small_checkpoint(path):
    tl.save({"w": tl.randn(3, 5), "b": tl.arange(7).to(tl.int16), "odd": np.arange(3, dtype=np.uint8),
             "step": 12, "name": "run-1", "empty": tl.zeros(0, 4)}, path)
    return path.read_bytes()


def test_every_changed_byte_is_refused(tmp_path):
    """Every byte of the file, changed to another value (xor 0x01, 0x80 and a random non-zero mask): the
    prefix fails its own checks, the header its CRC-32, the data (padding included) and the trailer the
    data's CRC-32. A CRC-32 detects every error within 32 consecutive bits, so no single-byte change can pass."""
    good = _small_checkpoint(tmp_path / "f")
    rng = random.Random(0)
    loaded = []
    for pos in range(len(good)):
        for mask in (0x01, 0x80, rng.randrange(1, 256)):
            blob = bytearray(good)
            blob[pos] ^= mask
            try:
                tl.load(io.BytesIO(blob))
                loaded.append((pos, mask))
            except tl.CheckpointError:
                pass
    assert loaded == [] and len(good) > 700


def test_changed_data_names_the_checksum(tmp_path):
    good = bytearray(_small_checkpoint(tmp_path / "f"))
    header, data = header_of(tmp_path / "f")
    blob = good.copy()
    blob[len(good) - 4 - len(data) + 3] ^= 0x10                 # a bit of the first weight
    (tmp_path / "bad").write_bytes(bytes(blob))
    _refused(tmp_path / "bad", "the data's CRC-32 is [0-9a-f]{8}, the file records [0-9a-f]{8}")
    blob = good.copy()
    blob[40] ^= 0x01                                            # inside the header
    (tmp_path / "bad").write_bytes(bytes(blob))
    _refused(tmp_path / "bad", "the header's CRC-32")


def test_nonzero_padding_is_refused_even_with_a_valid_checksum(tmp_path):
    header = {"data_bytes": 64, "arrays": _table(([4], 0)), "root": _refs(1)}
    _refused(forge(tmp_path / "f", header, bytes(16) + b"\1" + bytes(47)), "bytes 16..64 .* padding")


def test_random_flips_of_a_larger_file(tmp_path):
    """200 random byte changes in a 1 MB checkpoint (the issue's count): every one refused."""
    tl.save({"model": OrderedDict((f"layer{i}.weight", tl.randn(64, 64)) for i in range(64)), "epoch": 3},
            tmp_path / "f")
    good = (tmp_path / "f").read_bytes()
    rng = random.Random(1)
    for _ in range(200):
        blob = bytearray(good)
        blob[rng.randrange(len(good))] ^= rng.randrange(1, 256)
        with pytest.raises(tl.CheckpointError):
            tl.load(io.BytesIO(blob))
