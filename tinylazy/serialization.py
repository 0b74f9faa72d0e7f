"""`save(obj, path)` and `load(path, map_location=None)`: checkpoints without pickle.

What can be saved: nested dicts, lists and tuples of tensors (Parameters are saved as plain tensors), NumPy
(and CuPy) arrays, NumPy scalars, Python numbers, strings, bools and None. Dict keys may be strings,
numbers, bools or None (optimizer state is keyed by int).

The file (format version 1), all integers little-endian:

    bytes 0..7     magic  b"\\x89TLZ\\r\\n\\x1a\\n"   (the PNG trick: detects text-mode mangling)
    bytes 8..11    format version (uint32)
    bytes 12..19   header length H (uint64)
    bytes 20..     header: H bytes of UTF-8 JSON (see below), padded with spaces so that the data starts
                   at a multiple of 64
    data           every array's raw C-order little-endian bytes, each starting at a multiple of 64

The header is ``{"data_bytes": N, "arrays": [{"dtype": "float32", "shape": [2, 3], "offset": 0}, ...],
"root": <node>}``. A node is a JSON null/bool/number/string/list, or an object tagged by "$":
``{"$": "tuple", "v": [...]}``, ``{"$": "dict", "k": [...], "v": [...]}``, ``{"$": "tensor", "a": i,
"dev": "cpu", "rg": false}`` (array i of the table), ``{"$": "ndarray", "a": i}``, ``{"$": "cupy", "a": i,
"dev": "cuda:0"}``, ``{"$": "scalar", "a": i}``. An array referenced twice (tied weights) is stored once.

Loading parses JSON and copies bytes into arrays of whitelisted dtypes: it never runs code from the file.
Saving writes a temporary file next to the target, fsyncs it and renames it over the target, so an
interrupted save leaves the old file as it was.
"""
import json
import math
import os
import secrets
import struct

import numpy as np

from . import backend
from .tensor import Tensor

MAGIC = b"\x89TLZ\r\n\x1a\n"
VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")          # magic, version, header length
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128")


class CheckpointError(ValueError):
    """A file that `load` cannot read: truncated, corrupt, or not a tinylazy checkpoint."""


def _fmt(path):
    return "".join(f"[{k!r}]" for k in path) or "the top level"


def _align(n):
    return -(-n // ALIGN) * ALIGN


# =============================== save ======================================================================
class _Encoder:
    """Walks the object once: builds the JSON tree and the table of arrays to write."""

    def __init__(self):
        self.arrays, self.specs, self.index, self.offset = [], [], {}, 0
        self.active = set()

    def array(self, a, path):
        key = id(a)
        if key in self.index:
            return self.index[key]
        dtype = np.dtype(a.dtype)
        if dtype.name not in DTYPES:
            raise TypeError(f"tl.save: cannot save an array of dtype {dtype} at {_fmt(path)}; supported dtypes "
                            f"are {', '.join(DTYPES)}")
        i = self.index[key] = len(self.arrays)
        self.arrays.append(a)
        self.specs.append({"dtype": dtype.name, "shape": [int(s) for s in a.shape], "offset": self.offset})
        self.offset = _align(self.offset + int(a.size) * dtype.itemsize)
        return i

    def node(self, obj, path):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, Tensor):
            return self.tensor(obj, path)
        if isinstance(obj, np.ndarray):
            return {"$": "ndarray", "a": self.array(obj, path)}
        if isinstance(obj, np.generic):          # before float: np.float64 is a float subclass
            return {"$": "scalar", "a": self.array(np.asarray(obj), path)}
        if isinstance(obj, (int, float)):
            return int(obj) if isinstance(obj, int) else float(obj)
        if backend.is_meta(obj):
            raise TypeError(f"tl.save: cannot save a meta array at {_fmt(path)}: it has no data")
        if type(obj).__module__.split(".")[0] == "cupy" and hasattr(obj, "device"):
            return {"$": "cupy", "a": self.array(obj, path), "dev": str(backend.device_of(obj))}
        if isinstance(obj, (dict, list, tuple)):
            return self.container(obj, path)
        raise TypeError(f"tl.save: cannot save an object of type {type(obj).__name__} at {_fmt(path)}; "
                        "supported are tensors, NumPy arrays, dicts, lists, tuples, str, int, float, bool "
                        "and None")

    def tensor(self, t, path):
        if getattr(t, "is_lazy", False):
            raise ValueError(f"tl.save: cannot save an uninitialized (lazy) parameter at {_fmt(path)}: run one "
                             "forward first (e.g. `net(X)`), or call `net.materialize(example)`, so that it "
                             "has values")
        data = t.array
        if backend.is_meta(data):
            raise ValueError(f"tl.save: cannot save a meta tensor at {_fmt(path)}: it has a shape but no data")
        return {"$": "tensor", "a": self.array(data, path), "dev": str(backend.device_of(data)),
                "rg": bool(t.requires_grad)}

    def container(self, obj, path):
        if id(obj) in self.active:
            raise ValueError(f"tl.save: the object contains itself at {_fmt(path)} (a cycle)")
        self.active.add(id(obj))
        try:
            if isinstance(obj, dict):
                keys, values = [], []
                for k, v in obj.items():
                    if not (k is None or isinstance(k, (str, int, float, bool))):
                        raise TypeError(f"tl.save: cannot save a dict key of type {type(k).__name__} at "
                                        f"{_fmt(path)}; keys may be str, int, float, bool or None")
                    keys.append(self.node(k, path))
                    values.append(self.node(v, path + [k]))
                return {"$": "dict", "k": keys, "v": values}
            items = [self.node(v, path + [i]) for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else {"$": "tuple", "v": items}
        finally:
            self.active.discard(id(obj))


def _host_bytes(a):
    """The array's bytes as written: on the host, C order, little-endian."""
    a = np.ascontiguousarray(backend.to_device(a, "cpu"))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.reshape(-1).view(np.uint8)


def _write(fh, enc, root):
    header = json.dumps({"data_bytes": enc.offset, "arrays": enc.specs, "root": root},
                        separators=(",", ":")).encode("utf-8")
    start = _align(_PREFIX.size + len(header))
    header += b" " * (start - _PREFIX.size - len(header))
    fh.write(_PREFIX.pack(MAGIC, VERSION, len(header)))
    fh.write(header)
    written = 0
    for a, spec in zip(enc.arrays, enc.specs):
        fh.write(b"\0" * (spec["offset"] - written))
        data = _host_bytes(a)
        _write_array(fh, data)
        written = spec["offset"] + data.size
    fh.write(b"\0" * (enc.offset - written))


def _write_array(fh, data):
    if data.size:
        fh.write(memoryview(data))


def save(obj, f):
    """Save `obj` to `f` (a path, or a binary file object) without pickle. A path is written atomically:
    temporary file in the same folder, fsync, then rename over the target."""
    enc = _Encoder()
    root = enc.node(obj, [])                  # every check happens here, before any file is touched
    if hasattr(f, "write"):
        _write(f, enc, root)
        return
    path = os.fspath(f)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write(fh, enc, root)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                      # make the rename itself durable (POSIX)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# =============================== load ======================================================================
def _foreign(head, name):
    """Why a file that does not start with the magic bytes is not a checkpoint."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a pickle file (torch.save or pickle.dump?); tl.load never unpickles, because unpickling can run code"
    elif head[:4] == b"PK\x03\x04":
        kind = "a zip archive (a PyTorch checkpoint or a NumPy .npz?)"
    elif head[:6] == b"\x93NUMPY":
        kind = "a NumPy .npy file (read it with numpy.load)"
    else:
        kind = f"a file that starts with {head[:8]!r}"
    return CheckpointError(f"tl.load: {name} is not a tinylazy checkpoint: it looks like {kind}")


def _read_exact(fh, n, name, what, size):
    data = fh.read(n)
    if len(data) != n:
        raise CheckpointError(f"tl.load: {name} is truncated: it ends inside the {what} (the file has {size} "
                              "bytes); the save was interrupted or the copy is incomplete")
    return data


def _read_header(fh, name):
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(_PREFIX.size)
    if len(head) < len(MAGIC) and MAGIC.startswith(head):
        raise CheckpointError(f"tl.load: {name} is truncated: {size} bytes, shorter than the file header")
    if head[:len(MAGIC)] != MAGIC:
        raise _foreign(head, name)
    if len(head) < _PREFIX.size:
        raise CheckpointError(f"tl.load: {name} is truncated: {size} bytes, shorter than the file header")
    _, version, hlen = _PREFIX.unpack(head)
    if version > VERSION:
        raise CheckpointError(f"tl.load: {name} has format version {version}, newer than this tinylazy reads "
                              f"({VERSION}); upgrade tinylazy")
    if _PREFIX.size + hlen > size:
        raise CheckpointError(f"tl.load: {name} is truncated: the header needs {_PREFIX.size + hlen} bytes, "
                              f"the file has {size}")
    try:
        header = json.loads(_read_exact(fh, hlen, name, "header", size).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"tl.load: {name} is corrupt: its header is not valid JSON ({e})") from None
    start = _PREFIX.size + hlen
    if not isinstance(header, dict) or not {"data_bytes", "arrays", "root"} <= header.keys():
        raise CheckpointError(f"tl.load: {name} is corrupt: the header lacks data_bytes/arrays/root")
    if not isinstance(header["data_bytes"], int) or not isinstance(header["arrays"], list):
        raise CheckpointError(f"tl.load: {name} is corrupt: malformed data_bytes/arrays in the header")
    expected = start + header["data_bytes"]
    if size < expected:
        raise CheckpointError(f"tl.load: {name} is truncated: expected {expected} bytes, found {size} (the save "
                              "was interrupted or the copy is incomplete)")
    if size > expected:
        raise CheckpointError(f"tl.load: {name} is corrupt: {size - expected} unexpected bytes after the data")
    return header, start


def _read_arrays(fh, header, start, name):
    arrays = []
    data_bytes = header["data_bytes"]
    for i, spec in enumerate(header["arrays"]):
        try:
            dtype = spec["dtype"]
            if dtype not in DTYPES:
                raise ValueError(f"dtype {dtype!r} is not allowed")
            shape = tuple(int(s) for s in spec["shape"])
            if any(s < 0 for s in shape):
                raise ValueError(f"negative size in shape {shape}")
            offset = int(spec["offset"])
            nbytes = math.prod(shape) * np.dtype(dtype).itemsize
            if not 0 <= offset <= offset + nbytes <= data_bytes:   # checked before allocating anything
                raise ValueError(f"bytes {offset}..{offset + nbytes} lie outside the data section")
            a = np.empty(shape, np.dtype(dtype).newbyteorder("<"))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"tl.load: {name} is corrupt: array {i} of the table is malformed ({e})") from None
        if a.nbytes:
            fh.seek(start + offset)
            if fh.readinto(a.reshape(-1).view(np.uint8)) != a.nbytes:
                raise CheckpointError(f"tl.load: {name} is truncated inside array {i}")
        arrays.append(a.astype(a.dtype.newbyteorder("="), copy=False))
    return arrays


class _Decoder:
    def __init__(self, arrays, map_location, name):
        self.arrays, self.map, self.name = arrays, map_location, name
        self.moved = {}

    def corrupt(self, what, path):
        return CheckpointError(f"tl.load: {self.name} is corrupt: {what} at {_fmt(path)}")

    def array(self, node, path):
        i = node.get("a")
        if not isinstance(i, int) or not 0 <= i < len(self.arrays):
            raise self.corrupt(f"array index {i!r} out of range", path)
        return self.arrays[i], i

    def on_device(self, a, i, dev, path):
        dev = backend.device(dev if self.map is None else self.map)
        if dev.type == "cpu":
            return a
        if dev.type != "cuda":
            raise self.corrupt(f"unknown device {dev}", path)
        key = (i, dev)
        if key not in self.moved:
            try:
                self.moved[key] = backend.to_device(a, dev)
            except RuntimeError as e:
                hint = "; pass map_location='cpu' to load it on the cpu" if self.map is None else ""
                raise RuntimeError(f"tl.load: the tensor at {_fmt(path)} was saved on {dev}, which is not usable "
                                   f"here ({e}){hint}") from None
        return self.moved[key]

    def node(self, node, path):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.node(v, path + [i]) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            raise self.corrupt(f"unexpected {type(node).__name__}", path)
        tag = node.get("$")
        if tag == "dict":
            keys, values = node.get("k"), node.get("v")
            if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
                raise self.corrupt("malformed dict", path)
            out = {}
            for k, v in zip(keys, values):
                k = self.node(k, path)
                if isinstance(k, (list, dict)):
                    raise self.corrupt("unhashable dict key", path)
                out[k] = self.node(v, path + [k])
            return out
        if tag == "tuple":
            if not isinstance(node.get("v"), list):
                raise self.corrupt("malformed tuple", path)
            return tuple(self.node(v, path + [i]) for i, v in enumerate(node["v"]))
        if tag == "tensor":
            a, i = self.array(node, path)
            t = Tensor(self.on_device(a, i, node.get("dev", "cpu"), path))
            if node.get("rg") and a.dtype.kind == "f":
                t.requires_grad_(True)
            return t
        if tag == "ndarray":
            return self.array(node, path)[0]
        if tag == "scalar":
            return self.array(node, path)[0][()]
        if tag == "cupy":
            a, i = self.array(node, path)
            return self.on_device(a, i, node.get("dev", "cuda"), path)
        raise self.corrupt(f"unknown node type {tag!r}", path)


def load(f, map_location=None, weights_only=None):
    """Load what `save` wrote. Tensors return to the device they were saved from, or to `map_location`
    ("cpu", "cuda", "cuda:N" or a Device) when given. `weights_only` is accepted for PyTorch compatibility:
    loading is always data-only here. Raises CheckpointError for truncated, corrupt or foreign files."""
    if map_location is not None:
        if not isinstance(map_location, (str, backend.Device)):
            raise TypeError("tl.load: map_location must be a device like 'cpu', 'cuda' or 'cuda:1', got "
                            f"{type(map_location).__name__}")
        map_location = backend.device(map_location)
    if hasattr(f, "read"):
        return _load(f, getattr(f, "name", "the file"), map_location)
    path = os.fspath(f)
    with open(path, "rb") as fh:
        return _load(fh, repr(path), map_location)


def _load(fh, name, map_location):
    header, start = _read_header(fh, name)
    arrays = _read_arrays(fh, header, start, name)
    return _Decoder(arrays, map_location, name).node(header["root"], [])
