"""`load(f, map_location=None)`: check the whole header, then read the data, then verify its checksum, then
build the objects. Nothing is allocated for data before the header has passed every check in fileformat.py,
and what is then allocated is at most the size of the file."""
import os
import zlib
from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor
from .fileformat import (MAGIC, MAX_HEADER_BYTES, PREFIX, PREFIX_V1, TRAILER, VERSION, CheckpointError,
                         check_table, check_tree, corrupt, parse_header)


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


def _truncated(name, what):
    return CheckpointError(f"tl.load: {name} is truncated: {what} (the save was interrupted or the copy is "
                           "incomplete)")


def _read_header(fh, name):
    """-> (version, header, table, start of the data section), reading only the prefix and the header: every
    check of fileformat.py passes, and the file has exactly the size the header implies, before any data is read."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(PREFIX.size)
    if not head:
        raise _truncated(name, "the file is empty")
    if not MAGIC.startswith(head[:len(MAGIC)]):
        raise _foreign(head, name)
    if len(head) < 12:
        raise _truncated(name, f"{size} bytes, shorter than the file's prefix")
    version = int.from_bytes(head[8:12], "little")
    if version > VERSION:
        raise CheckpointError(f"tl.load: {name} has format version {version}, newer than this tinylazy reads "
                              f"({VERSION}); upgrade tinylazy")
    if version not in (1, 2):
        raise corrupt(name, f"format version {version} does not exist")
    prefix = PREFIX if version == 2 else PREFIX_V1
    if len(head) < prefix.size:
        raise _truncated(name, f"{size} bytes, shorter than the file's prefix")
    _, _, hlen, *header_crc = prefix.unpack(head[:prefix.size])
    if hlen > MAX_HEADER_BYTES:
        raise corrupt(name, f"it claims a header of {hlen:,} bytes, more than tl.load reads ({MAX_HEADER_BYTES:,})")
    start = prefix.size + hlen
    if start > size:
        raise _truncated(name, f"the header needs {start} bytes, the file has {size}")
    fh.seek(prefix.size)
    raw = fh.read(hlen)
    if version == 2 and zlib.crc32(raw) != header_crc[0]:
        raise corrupt(name, f"the header's CRC-32 is {zlib.crc32(raw):08x}, the file records {header_crc[0]:08x} "
                            "(bytes were changed: a disk or copy error, or an edit)")
    header = parse_header(raw, name)
    table = check_table(header, name)
    check_tree(header["root"], table, name)
    expected = start + header["data_bytes"] + (TRAILER.size if version == 2 else 0)
    if size < expected:
        raise _truncated(name, f"expected {expected} bytes, found {size}")
    if size > expected:
        raise corrupt(name, f"{size - expected} unexpected bytes after the data")
    return version, header, table, start


def _padding(fh, pos, end, name):
    """The zero bytes between two arrays (fewer than ALIGN)."""
    pad = fh.read(end - pos)
    if len(pad) != end - pos:
        raise _truncated(name, f"it ends inside the data section, at byte {pos + len(pad)} of it")
    if pad.count(0) != len(pad):
        raise corrupt(name, f"bytes {pos}..{end} of the data section are padding and must be zero")
    return pad


def _read_arrays(fh, version, table, data_bytes, start, name):
    """Read every array into a fresh NumPy array, and check the padding between them; for version 2,
    compare the CRC-32 of the whole data section with the trailer's."""
    arrays, crc, pos = [], 0, 0
    fh.seek(start)
    for i, (dtype, shape, offset, nbytes) in enumerate(table):
        crc = zlib.crc32(_padding(fh, pos, offset, name), crc)
        a = np.empty(shape, np.dtype(dtype).newbyteorder("<"))
        view = a.reshape(-1).view(np.uint8)
        if nbytes and fh.readinto(view) != nbytes:
            raise _truncated(name, f"it ends inside array {i}")
        crc = zlib.crc32(view, crc)
        arrays.append(a.astype(a.dtype.newbyteorder("="), copy=False))
        pos = offset + nbytes
    crc = zlib.crc32(_padding(fh, pos, data_bytes, name), crc)
    if version == 2:
        (recorded,) = TRAILER.unpack(fh.read(TRAILER.size))
        if crc != recorded:
            raise corrupt(name, f"the data's CRC-32 is {crc:08x}, the file records {recorded:08x} (bytes were "
                                "changed: a disk or copy error, or an edit)")
    return arrays


class _Decoder:
    """Builds the objects from a tree that check_tree has accepted."""

    def __init__(self, arrays, map_location):
        self.arrays, self.map = arrays, map_location
        self.moved = {}

    def on_device(self, i, dev, path):
        dev = backend.device(dev if self.map is None else self.map)
        if dev.type == "cpu":
            return self.arrays[i]
        key = (i, dev)
        if key not in self.moved:
            try:
                self.moved[key] = backend.to_device(self.arrays[i], dev)
            except RuntimeError as e:
                where = "".join(f"[{k!r}]" for k in path) or "the top level"
                hint = "; pass map_location='cpu' to load it on the cpu" if self.map is None else ""
                raise RuntimeError(f"tl.load: the tensor at {where} was saved on {dev}, which is not usable "
                                   f"here ({e}){hint}") from None
        return self.moved[key]

    def node(self, node, path):
        if not isinstance(node, (list, dict)):
            return node
        if isinstance(node, list):
            return [self.node(v, path + [i]) for i, v in enumerate(node)]
        tag = node["$"]
        if tag in ("dict", "odict"):
            out = OrderedDict() if tag == "odict" else {}
            for k, v in zip(node["k"], node["v"]):
                out[k] = self.node(v, path + [k])
            return out
        if tag == "tuple":
            return tuple(self.node(v, path + [i]) for i, v in enumerate(node["v"]))
        if tag == "tensor":
            a = self.arrays[node["a"]]
            t = Tensor(self.on_device(node["a"], node["dev"], path))
            if node["rg"] and a.dtype.kind == "f":
                t.requires_grad_(True)
            return t
        if tag == "ndarray":
            return self.arrays[node["a"]]
        if tag == "scalar":
            return self.arrays[node["a"]][()]
        return self.on_device(node["a"], node["dev"], path)          # "cupy"


def load(f, map_location=None, weights_only=None):
    """Load what `save` wrote. Tensors return to the device they were saved from, or to `map_location`
    ("cpu", "cuda", "cuda:N" or a Device) when given. `weights_only` is accepted for PyTorch compatibility:
    loading is always data-only here. Raises CheckpointError (a ValueError) for a truncated, corrupt,
    hostile or foreign file, naming what is wrong."""
    if map_location is not None:
        if not isinstance(map_location, (str, backend.Device)):
            raise TypeError("tl.load: map_location must be a device like 'cpu', 'cuda' or 'cuda:1', got "
                            f"{type(map_location).__name__}")
        map_location = backend.device(map_location)
        if map_location.type not in ("cpu", "cuda"):
            raise ValueError(f"tl.load: map_location must be a cpu or cuda device, got {map_location}")
    if hasattr(f, "read"):
        return _load(f, getattr(f, "name", "the file"), map_location)
    path = os.fspath(f)
    with open(path, "rb") as fh:
        return _load(fh, repr(path), map_location)


def _load(fh, name, map_location):
    version, header, table, start = _read_header(fh, name)
    arrays = _read_arrays(fh, version, table, header["data_bytes"], start, name)
    return _Decoder(arrays, map_location).node(header["root"], [])
