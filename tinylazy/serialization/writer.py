"""`save(obj, f)`: the object -> a JSON tree and a table of arrays -> the file (see the package docstring)."""
import json
import os
import zlib
from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import files
from .fileformat import (ALIGN, DTYPES, MAGIC, MAX_HEADER_BYTES, MAX_INT_DIGITS, MAX_NESTING, PREFIX, TRAILER,
                         VERSION, align)

_INT_LIMIT = 10 ** MAX_INT_DIGITS


def _fmt(path):
    return "".join(f"[{k!r}]" for k in path) or "the top level"


class _Encoder:
    """Walks the object once: builds the JSON tree and the table of arrays to write. Every check that can
    refuse the object happens here, before any file is touched."""

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
        self.offset = align(self.offset + int(a.size) * dtype.itemsize)
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
        if isinstance(obj, int):
            if not -_INT_LIMIT < obj < _INT_LIMIT:
                raise ValueError(f"tl.save: the integer at {_fmt(path)} has more than {MAX_INT_DIGITS} digits, "
                                 "more than tl.load reads; save it as a string")
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
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
        """dict and OrderedDict keep their type; other dict, list and tuple subclasses are saved as their base."""
        if id(obj) in self.active:
            raise ValueError(f"tl.save: the object contains itself at {_fmt(path)} (a cycle)")
        if len(self.active) >= MAX_NESTING:
            raise ValueError(f"tl.save: the object nests more than {MAX_NESTING} containers deep at {_fmt(path)}, "
                             "more than tl.load reads")
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
                return {"$": "odict" if isinstance(obj, OrderedDict) else "dict", "k": keys, "v": values}
            items = [self.node(v, path + [i]) for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else {"$": "tuple", "v": items}
        finally:
            self.active.discard(id(obj))


def _encode(obj):
    """-> (header bytes, the arrays, their table entries); raises before any file is touched."""
    enc = _Encoder()
    root = enc.node(obj, [])
    header = json.dumps({"data_bytes": enc.offset, "arrays": enc.specs, "root": root},
                        separators=(",", ":")).encode("utf-8")
    if len(header) > MAX_HEADER_BYTES - ALIGN:
        raise ValueError(f"tl.save: the file's header (the structure and every Python value) would take "
                         f"{len(header):,} bytes, more than tl.load reads ({MAX_HEADER_BYTES:,}); store long "
                         "lists of numbers as arrays or tensors")
    header += b" " * (align(PREFIX.size + len(header)) - PREFIX.size - len(header))   # data starts aligned
    return header, enc.arrays, enc.specs


def _host_bytes(a):
    """The array's bytes as written: on the host, C order, little-endian."""
    a = np.ascontiguousarray(backend.to_device(a, "cpu"))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.reshape(-1).view(np.uint8)


def _write(fh, header, arrays, specs):
    """Prefix (with the header's CRC-32), header, the arrays with zero padding, the data's CRC-32."""
    fh.write(PREFIX.pack(MAGIC, VERSION, len(header), zlib.crc32(header)))
    fh.write(header)
    crc = written = 0
    for a, spec in zip(arrays, specs):
        pad = b"\0" * (spec["offset"] - written)
        fh.write(pad)
        data = _host_bytes(a)
        _write_array(fh, data)
        crc = zlib.crc32(data, zlib.crc32(pad, crc))
        written = spec["offset"] + data.size
    pad = b"\0" * (align(written) - written)
    fh.write(pad)
    fh.write(TRAILER.pack(zlib.crc32(pad, crc)))


def _write_array(fh, data):
    if data.size:
        fh.write(memoryview(data))


def save(obj, f):
    """Save `obj` to `f` (a path, or a binary file object) without pickle.

    A path is written atomically (a hidden temporary file `.<name>.<hex>.tmp` in the same folder, fsync, then
    a rename over the target), through a symlink to its target, keeping an existing file's permission bits;
    a target this user may not write to raises PermissionError, as `open(path, "wb")` would. Leftover
    temporary files of killed saves to the same path are removed first (see files.py for the rule)."""
    header, arrays, specs = _encode(obj)       # every check happens here, before any file is touched
    if hasattr(f, "write"):
        _write(f, header, arrays, specs)
        return
    files.write_atomically(os.fsdecode(os.fspath(f)), lambda fh: _write(fh, header, arrays, specs))
