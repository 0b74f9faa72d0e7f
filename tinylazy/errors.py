"""Errors shared across tinylazy."""


class ShapeError(ValueError):
    """A shape does not fit: the message names the op or module, the expected and the received shape."""
