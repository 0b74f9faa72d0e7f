"""`tl.save(obj, path)` and `tl.load(path, map_location=None)`: checkpoints without pickle.

What can be saved: nested dicts (OrderedDict stays OrderedDict; other dict subclasses load as dict), lists
and tuples (subclasses load as list and tuple) of tensors (Parameters are saved as plain tensors), NumPy (and
CuPy) arrays, NumPy scalars, Python numbers, strings, bools and None. Dict keys may be strings, numbers,
bools or None (optimizer state is keyed by int).

The file (format version 2), all integers little-endian:

    bytes 0..7     magic  b"\\x89TLZ\\r\\n\\x1a\\n"   (the PNG trick: detects text-mode mangling)
    bytes 8..11    format version (uint32)
    bytes 12..19   header length H (uint64)
    bytes 20..23   CRC-32 of the H header bytes (uint32)
    bytes 24..     header: H bytes of UTF-8 JSON (see below), padded with spaces so that the data starts
                   at a multiple of 64
    data           every array's raw C-order little-endian bytes, in table order, each starting at the first
                   multiple of 64 after the previous one; zero bytes in between and after the last one, up to
                   a multiple of 64
    last 4 bytes   CRC-32 of the data section (uint32)

The header is ``{"data_bytes": N, "arrays": [{"dtype": "float32", "shape": [2, 3], "offset": 0}, ...],
"root": <node>}``. A node is a JSON null/bool/number/string/list, or an object tagged by "$":
``{"$": "tuple", "v": [...]}``, ``{"$": "dict", "k": [...], "v": [...]}`` (``"odict"`` for an OrderedDict),
``{"$": "tensor", "a": i, "dev": "cpu", "rg": false}`` (array i of the table), ``{"$": "ndarray", "a": i}``,
``{"$": "cupy", "a": i, "dev": "cuda:0"}``, ``{"$": "scalar", "a": i}``. An array referenced twice (tied
weights) is stored once.

Version 1 (tinylazy before the checksums) is the same without bytes 20..23 and the trailer, and without
"odict"; it still loads, through the same checks, but nothing can tell its changed bytes from real ones.

Loading (reader.py) checks the whole header first (fileformat.py: bounded size and nesting, a table whose
arrays cover the data section exactly, known node types), reads data only then, verifies both checksums, and
copies bytes into arrays of whitelisted dtypes: it never runs code from the file. Saving (writer.py) writes
a temporary file next to the target and renames it over the target (files.py), so an interrupted save
leaves the old file as it was.
"""
from .fileformat import VERSION, CheckpointError
from .reader import load
from .writer import save

__all__ = ["save", "load", "CheckpointError", "VERSION"]
