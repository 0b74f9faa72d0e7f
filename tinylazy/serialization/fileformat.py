"""The checkpoint format's constants, and the checks a file's header passes before any data is read.

A hostile file must cost little: everything here runs on the header alone (at most MAX_HEADER_BYTES), and it
bounds what the reader will then allocate by the size of the file itself. The checks, in order:

1. the header's JSON nests at most MAX_JSON_DEPTH brackets deep (counted before parsing, so a deeply nested
   header never reaches the recursive JSON parser); integers have at most MAX_INT_DIGITS digits; no JSON
   object repeats a key;
2. the array table (`check_table`): whitelisted dtypes, shapes and offsets of plain non-negative integers
   (no bools, floats or strings), and the arrays stored in table order, each at the first multiple of ALIGN
   after the one before, so that together they cover the data section exactly: no overlap, no gap, nothing
   outside it;
3. the object tree (`check_tree`): known node types with exactly their fields, array indices in range,
   hashable dict keys without repeats, device strings of the form 'cpu' or 'cuda:N', and every array of the
   table referenced at least once.

Each failure raises CheckpointError naming the file and what is wrong.
"""
import json
import math
import re
import struct

import numpy as np

MAGIC = b"\x89TLZ\r\n\x1a\n"
VERSION = 2                                # 1: no checksums (still read); 2: CRC-32 of header and data
ALIGN = 64
PREFIX_V1 = struct.Struct("<8sIQ")         # magic, version, header length
PREFIX = struct.Struct("<8sIQI")           # magic, version, header length, CRC-32 of the header
TRAILER = struct.Struct("<I")              # CRC-32 of the data section
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128")

MAX_HEADER_BYTES = 100_000_000             # safetensors' limit too
MAX_NESTING = 100                          # containers inside containers, as `save` counts them
MAX_JSON_DEPTH = 2 * MAX_NESTING + 2       # a dict or tuple is two JSON levels ({"$": .., "v": [..]})
MAX_INT_DIGITS = 1000
MAX_FLOAT_CHARS = 100                      # repr(float) needs at most 24
MAX_NDIM = 64                              # NumPy's own limit
MAX_ARRAY_BYTES = 2 ** 62                  # counting zero dimensions as 1: NumPy refuses more
DEVICE = re.compile(r"cpu|cuda(:(0|[1-9][0-9]{0,3}))?")

# The node types of the object tree and their exact fields.
FIELDS = {"dict": {"$", "k", "v"}, "odict": {"$", "k", "v"}, "tuple": {"$", "v"},
          "tensor": {"$", "a", "dev", "rg"}, "ndarray": {"$", "a"}, "scalar": {"$", "a"}, "cupy": {"$", "a", "dev"}}


class CheckpointError(ValueError):
    """A file that `tl.load` cannot read: truncated, corrupt, hostile, or not a tinylazy checkpoint."""


def align(n):
    return -(-n // ALIGN) * ALIGN


def is_int(x):
    """A JSON integer: bool is an int subclass in Python, but True is not a size."""
    return type(x) is int


def corrupt(name, what):
    return CheckpointError(f"tl.load: {name} is corrupt: {what}")


# =============================== 1. parsing the header, bounded ============================================
_STEP = np.zeros(256, np.int8)              # +1 for an opening bracket, -1 for a closing one
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1
_CHUNK = 1 << 20


def json_depth(raw):
    """How deep the brackets of a JSON text nest (brackets inside strings do not count), without parsing it
    and in memory bounded by a chunk. Escapes are read left to right, as JSON does: once every escaped
    backslash and then every escaped quote is removed, each remaining quote opens or closes a string."""
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    depth = deepest = in_string = 0
    for i in range(0, len(text), _CHUNK):
        chunk = np.frombuffer(text, np.uint8, min(_CHUNK, len(text) - i), i)
        inside = np.bitwise_xor.accumulate((chunk == ord('"')).view(np.uint8)) ^ in_string
        in_string = int(inside[-1])
        running = depth + np.cumsum(_STEP[chunk[inside == 0]], dtype=np.int64)
        if running.size:
            depth, deepest = int(running[-1]), max(deepest, int(running.max()))
    return deepest


class _Refused(Exception):
    """Raised inside the JSON parser's hooks; turned into a CheckpointError that names the file."""


def _parse_int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} are read)")
    return int(text)


def _parse_float(text):
    if len(text) > MAX_FLOAT_CHARS:
        raise _Refused(f"a number written with {len(text)} characters (at most {MAX_FLOAT_CHARS} are read)")
    return float(text)


def _object(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Refused(f"a JSON object repeats a key ({sorted(k for k, _ in pairs)})")
    return obj


def parse_header(raw, name):
    """The header's bytes -> the JSON object, refusing deep nesting, huge numbers and repeated keys."""
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise corrupt(name, f"its header nests {depth} levels deep (at most {MAX_JSON_DEPTH} are read)")
    try:
        header = json.loads(raw.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
                            object_pairs_hook=_object)
    except UnicodeDecodeError as e:
        raise corrupt(name, f"its header is not UTF-8 ({e})") from None
    except json.JSONDecodeError as e:
        raise corrupt(name, f"its header is not valid JSON ({e})") from None
    except _Refused as e:
        raise corrupt(name, f"its header holds {e}") from None
    if not isinstance(header, dict) or header.keys() != {"data_bytes", "arrays", "root"}:
        found = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise corrupt(name, f"the header must be an object with data_bytes, arrays and root, found {found}")
    return header


# =============================== 2. the array table ========================================================
def check_table(header, name):
    """-> [(dtype, shape, offset, nbytes)] for each array, after checking that the arrays are stored in table
    order, each at the first multiple of ALIGN after the previous one, covering the data section exactly."""
    data_bytes, specs = header["data_bytes"], header["arrays"]
    if not is_int(data_bytes) or data_bytes < 0:
        raise corrupt(name, f"data_bytes must be a non-negative integer, found {data_bytes!r}")
    if not isinstance(specs, list):
        raise corrupt(name, f"the array table must be a list, found {type(specs).__name__}")
    table, end = [], 0                     # end: where the previous array's bytes end
    for i, spec in enumerate(specs):
        def bad(what):
            return corrupt(name, f"array {i} of the table {what}")

        if not isinstance(spec, dict) or spec.keys() != {"dtype", "shape", "offset"}:
            raise bad("must be an object with dtype, shape and offset")
        dtype, shape, offset = spec["dtype"], spec["shape"], spec["offset"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise bad(f"has dtype {dtype!r}, which is not allowed (allowed: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(is_int(s) and s >= 0 for s in shape):
            raise bad(f"has shape {shape!r}: a shape is a list of at most {MAX_NDIM} non-negative integers")
        itemsize = np.dtype(dtype).itemsize
        if math.prod(max(s, 1) for s in shape) * itemsize > MAX_ARRAY_BYTES:
            raise bad(f"has an absurd shape {shape} (more than 2**62 bytes, zero dimensions counted as 1)")
        if not is_int(offset) or offset < 0:
            raise bad(f"has offset {offset!r}: an offset is a non-negative integer")
        nbytes = math.prod(shape) * itemsize
        if offset + nbytes > data_bytes:
            raise bad(f"(bytes {offset}..{offset + nbytes}) lies outside the data section ({data_bytes} bytes)")
        if offset < end:
            raise bad(f"(bytes {offset}..{offset + nbytes}) overlaps or precedes array {i - 1}, which ends at "
                      f"byte {end}: arrays are stored in table order without overlapping")
        if offset != align(end):
            raise bad(f"starts at byte {offset}, but the first multiple of {ALIGN} after the previous array is "
                      f"{align(end)}: bytes {end}..{offset} belong to no array")
        table.append((dtype, tuple(shape), offset, nbytes))
        end = offset + nbytes
    if data_bytes != align(end):
        raise corrupt(name, f"the data section has {data_bytes} bytes, but the arrays end at byte {end}: "
                            f"bytes {end}..{data_bytes} belong to no array")
    return table


# =============================== 3. the object tree ========================================================
def check_tree(root, table, name):
    """Check every node of the object tree, and that every array of the table is referenced. Recursion is
    safe: parse_header bounded the depth."""
    seen = set()

    def fail(what, path):
        where = "".join(f"[{k!r}]" for k in path) or "the top level"
        return corrupt(name, f"{what} at {where}")

    def index(node, path):
        i = node["a"]
        if not is_int(i) or not 0 <= i < len(table):
            raise fail(f"array index {i!r} is not one of the table's {len(table)} arrays", path)
        seen.add(i)
        return i

    def device(node, path, kinds):
        dev = node["dev"]
        if not isinstance(dev, str) or not DEVICE.fullmatch(dev) or dev.partition(":")[0] not in kinds:
            raise fail(f"device {dev!r} is not one of {' or '.join(repr(k + '...') for k in kinds)}", path)

    def walk(node, path):
        if node is None or isinstance(node, (bool, int, float, str)):
            return
        if isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])
            return
        tag = node.get("$")
        if not isinstance(tag, str) or tag not in FIELDS:
            raise fail(f"unknown node type {tag!r}", path)
        if node.keys() != FIELDS[tag]:
            raise fail(f"a {tag} node must have exactly the fields {sorted(FIELDS[tag])}, found {sorted(node)}",
                       path)
        if tag in ("dict", "odict"):
            keys, values = node["k"], node["v"]
            if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
                raise fail("a dict node needs two lists of the same length (keys k and values v)", path)
            distinct = set()
            for k in keys:
                if not (k is None or isinstance(k, (bool, int, float, str))):
                    raise fail(f"a dict key must be a string, number, bool or null, found {type(k).__name__} "
                               "(unhashable)", path)
                if k in distinct:
                    raise fail(f"the dict key {k!r} appears twice", path)
                distinct.add(k)
            for k, v in zip(keys, values):
                walk(v, path + [k])
        elif tag == "tuple":
            if not isinstance(node["v"], list):
                raise fail("a tuple node's v must be a list", path)
            for i, v in enumerate(node["v"]):
                walk(v, path + [i])
        elif tag == "tensor":
            index(node, path)
            device(node, path, ("cpu", "cuda"))
            if not isinstance(node["rg"], bool):
                raise fail(f"requires_grad (rg) must be true or false, found {node['rg']!r}", path)
        elif tag == "cupy":
            index(node, path)
            device(node, path, ("cuda",))
        elif tag == "scalar":
            i = index(node, path)
            if table[i][1] != ():
                raise fail(f"a NumPy scalar must be a 0-d array, but array {i} has shape {table[i][1]}", path)
        else:
            index(node, path)

    walk(root, [])
    if len(seen) != len(table):
        unused = sorted(set(range(len(table))) - seen)
        raise corrupt(name, f"{len(unused)} arrays of the table are referenced by nothing (array {unused[0]}"
                            f"{' and more' if len(unused) > 1 else ''})")
