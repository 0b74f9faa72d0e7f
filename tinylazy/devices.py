"""Devices: `Device("cpu")`, `Device("cuda", 0)`, `Device("meta")`, and `device("cuda:1")` that parses them.

A Device compares equal to its string (`t.device == "cpu"`), and devices are interned: one object each, so
the engine compares and hashes them cheaply. Which array module a device uses is backend.py's business.
"""


class Device:
    """A device: ``Device("cpu")``, ``Device("cuda", 0)``, ``Device("meta")``. Compares equal to its string."""
    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        self.type, self.index = type, index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (ValueError, TypeError):
                return False
        return isinstance(other, Device) and other.type == self.type and other.index == self.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))


_DEVICES = {}


def device(spec="cpu", index=None):
    """Parse ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"meta"`` or a Device; devices are interned (one object each)."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a string like 'cpu', 'cuda:0' or 'meta', got {type(spec).__name__}")
    key = (spec, index)
    dev = _DEVICES.get(key)
    if dev is not None:
        return dev
    kind, _, num = spec.partition(":")
    if kind not in ("cpu", "cuda", "meta"):
        raise ValueError(f"device: unknown device {spec!r}; expected 'cpu', 'cuda', 'cuda:N' or 'meta'")
    if num:
        if not num.isdigit() or index is not None:
            raise ValueError(f"device: bad device string {spec!r}")
        index = int(num)
    if kind == "cuda" and index is None:
        index = 0
    if kind != "cuda" and index not in (None, 0):
        raise ValueError(f"device: {kind} has no index (got {spec!r}, index={index})")
    dev = _DEVICES[key] = _intern(Device(kind, index if kind == "cuda" else None))
    return dev


_INTERNED = {}


def _intern(dev):
    return _INTERNED.setdefault((dev.type, dev.index), dev)


CPU = device("cpu")
META = device("meta")
