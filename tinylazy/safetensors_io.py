"""`tl.save_safetensors(state_dict, path)` / `tl.load_safetensors(path, device=None)`: flat dicts of tensors
in the safetensors format, the ecosystem's no-pickle format for weights, so that they move to and from
PyTorch (`safetensors.torch.save_file` / `load_file`) and other frameworks.

The file is written and read by the `safetensors` package through its NumPy API (an optional extra:
``pip install safetensors``); tinylazy only turns tensors into host arrays and back. A safetensors file
holds dense, C-contiguous, little-endian arrays under string names, so non-contiguous tensors are copied
into that layout on save; the names, shapes, dtypes and values come back exactly.
"""
from collections import OrderedDict

import numpy as np

from . import backend
from .tensor import Tensor


def _safetensors_numpy():
    try:
        from safetensors import numpy as st
    except ImportError as e:
        raise ImportError("tl.save_safetensors / tl.load_safetensors need the `safetensors` package, which is "
                          "not installed: pip install safetensors (or pip install 'tinylazy[safetensors]')") from e
    return st


def _host_array(name, value):
    """The values of `value` (a Tensor or a raw array) as a C-contiguous little-endian NumPy array."""
    if getattr(value, "is_lazy", False):
        raise RuntimeError(f"save_safetensors: '{name}' is uninitialized (a lazy parameter or buffer: no values "
                           f"yet); run one forward on an example first (or net.materialize(example))")
    array = value.array if isinstance(value, Tensor) else value
    if backend.is_meta(array):
        raise RuntimeError(f"save_safetensors: '{name}' is a meta tensor (a shape without values)")
    if not (isinstance(array, np.ndarray) or type(array).__module__.startswith("cupy")):
        raise TypeError(f"save_safetensors: '{name}' is a {type(value).__name__}, expected a tensor")
    host = np.asarray(backend.to_device(array, "cpu"), order="C")       # (keeps 0-d arrays 0-d)
    return host.astype(host.dtype.newbyteorder("<"), copy=False) if host.dtype.byteorder == ">" else host


def save_safetensors(state_dict, path, metadata=None):
    """Write `state_dict` (a flat {name: tensor} dict, e.g. `model.state_dict()`) to `path` in the
    safetensors format. `metadata` is an optional {str: str} stored in the header."""
    st = _safetensors_numpy()
    arrays = OrderedDict()
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"save_safetensors: names must be strings, got {name!r}")
        arrays[name] = _host_array(name, value)
    st.save_file(arrays, str(path), metadata=metadata)


def load_safetensors(path, device=None):
    """Read a safetensors file into an ordered {name: Tensor} dict, on `device` (default cpu), ready for
    `model.load_state_dict` (which also materializes a lazy model from the shapes)."""
    st = _safetensors_numpy()
    dev = backend.device(device if device is not None else "cpu")
    out = OrderedDict()
    for name, array in st.load_file(str(path)).items():
        if not array.flags.writeable:
            array = array.copy()
        out[name] = Tensor(backend.to_device(array, dev))
    return out
