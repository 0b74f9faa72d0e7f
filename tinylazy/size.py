"""`tl.Size`: the type of `tensor.shape` and `tensor.size()`, as `torch.Size` is in PyTorch.

A Size *is* a tuple of ints (a subclass), so it goes wherever a tuple of sizes goes (`reshape`, `view`,
`zeros`, `expand`, ...), compares equal to the plain tuple with the same sizes, and unpacks like one. What
it adds, as in PyTorch:

- `numel()`: the number of elements of a tensor of this shape (the product of the sizes; 1 for `Size([])`);
- `repr` / `str`: ``tl.Size([2, 3])`` (PyTorch prints ``torch.Size([2, 3])``);
- slicing a Size and adding a tuple to it (on either side) give a Size again; so does `size * n`.
"""
import math
import operator


class Size(tuple):
    """An immutable tuple of non-negative ints: the sizes of a tensor's dimensions."""

    __slots__ = ()

    def __new__(cls, sizes=()):
        values = []
        for s in sizes:
            try:
                values.append(operator.index(s))      # ints, NumPy ints, one-element integer tensors
            except TypeError:
                raise TypeError(f"tl.Size(): expected a sequence of ints, got an element of type "
                                f"{type(s).__name__} ({s!r})") from None
        return tuple.__new__(cls, values)

    def numel(self):
        """The number of elements of a tensor with this shape (1 for a 0-d shape)."""
        return math.prod(self)

    def __repr__(self):
        return f"tl.Size({list(self)})"

    __str__ = __repr__

    def __getitem__(self, index):
        item = tuple.__getitem__(self, index)
        return tuple.__new__(Size, item) if isinstance(index, slice) else item

    def __add__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple.__add__(self, other))

    def __radd__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple.__add__(other, self))

    def __mul__(self, n):
        return tuple.__new__(Size, tuple.__mul__(self, n))

    __rmul__ = __mul__

    def __reduce__(self):                     # pickle / deepcopy as a Size, not through __new__(cls)
        return (Size, (tuple(self),))


def _from_shape(shape):
    """The Size of an array's `.shape` (already a tuple of Python ints: nothing to check)."""
    return tuple.__new__(Size, shape)
