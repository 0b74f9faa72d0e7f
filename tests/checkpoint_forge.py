"""Checkpoint files as a hostile or buggy writer could make them: any header and data, with correct
checksums, so that a test reaches tl.load's header checks instead of stopping at a checksum mismatch."""
import json
import struct
import zlib

MAGIC = b"\x89TLZ\r\n\x1a\n"


def forge(path, header, data=b"", version=2):
    """Write `header` (a JSON-able object, or raw bytes) and `data` as a format-`version` file; -> path."""
    raw = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if version == 1:
        path.write_bytes(struct.pack("<8sIQ", MAGIC, 1, len(raw)) + raw + data)
    else:
        path.write_bytes(struct.pack("<8sIQI", MAGIC, version, len(raw), zlib.crc32(raw)) + raw + data
                         + struct.pack("<I", zlib.crc32(data)))
    return path


def header_of(path):
    """-> (header as a dict, data section bytes) of a version-2 file that tl.save wrote."""
    blob = path.read_bytes()
    (hlen,) = struct.unpack("<Q", blob[12:20])
    return json.loads(blob[24:24 + hlen]), blob[24 + hlen:-4]
