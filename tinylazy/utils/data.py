"""Datasets and the DataLoader, after `torch.utils.data`.

A (map-style) dataset is anything with ``__len__`` and ``__getitem__(i) -> sample``. A `DataLoader` draws
the indices (in order, or a fresh permutation each epoch from tinylazy's seeded cpu generator, so
``tl.manual_seed`` makes the order repeatable), cuts them into batches and turns each batch into tensors,
in one of two ways:

- **fast path**: a `TensorDataset` (and what is built on one: `tinylazy.datasets.FashionMNIST`, a `Subset`
  of one) hands over a whole batch with one fancy index per tensor, ``x.array[indices]``: no per-sample
  Python loop, no stacking;
- **general path**: ``collate_fn([dataset[i] for i in batch])``, by default `default_collate`, which stacks
  tensors, NumPy arrays and numbers, and recurses into tuples, lists and dicts of them.

Both paths give the same batches. With ``device=`` every tensor of a batch is moved to that device.
"""
import collections.abc
import math
import numbers

import numpy as np

from .. import backend
from ..creation import permutation
from ..random import RNG
from ..tensor import Tensor
from ._samplers import Sampler, DistributedSampler

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader", "default_collate", "Sampler",
           "DistributedSampler"]


# --- datasets --------------------------------------------------------------------------------------
class Dataset:
    """Base class of map-style datasets: subclasses implement ``__getitem__(index)`` and ``__len__()``.

    A dataset that can produce a whole batch at once overrides ``_get_batch(indices)`` (a 1-D int64 NumPy
    array in, a list of tensors out); returning None, as here, means "collate samples one by one".
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index)")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__()")

    def _get_batch(self, indices):
        return None


class TensorDataset(Dataset):
    """Samples are the rows of the given tensors: ``dataset[i] == (t[i] for t in tensors)``.

    All tensors must have the same size in their first dimension. The DataLoader batches it with one fancy
    index per tensor (``t.array[indices]``), which is what makes it fast.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        for k, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: argument {k} is a {type(t).__name__}, not a Tensor "
                                "(convert it with tl.as_tensor(...))")
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: argument {k} is a 0-d tensor; every tensor needs a first "
                                 "dimension that indexes the samples")
            if t.is_meta:
                raise ValueError(f"TensorDataset: argument {k} is a meta tensor, which has no data to load")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) > 1:
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(f"TensorDataset: all tensors must have the same size in the first dimension, "
                             f"got sizes {sizes} (shapes {shapes})")
        self.tensors = tuple(tensors)

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]

    def _get_batch(self, indices):
        return [_take(t, indices) for t in self.tensors]


def _one_cuda_device(dataset):
    """The cuda device that holds every tensor of a TensorDataset, else None."""
    if type(dataset) is not TensorDataset:
        return None
    devices = {t.device for t in dataset.tensors}
    dev = devices.pop() if len(devices) == 1 else None
    return dev if dev is not None and dev.type == "cuda" else None


def _take(t, indices):
    """Rows `indices` of tensor `t`, gathered in one fancy index on t's device (a copy, as stacking would be)."""
    if t.device.type == "cuda":
        indices = backend.to_device(indices, t.device)
    if t.requires_grad:                      # keep the graph: go through the differentiable indexing op
        return t[indices]
    with backend.on_device(t.device):
        return Tensor(t.array[indices])


class Subset(Dataset):
    """The samples of `dataset` at `indices` (a sequence of ints), in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices
        self._indices = np.asarray(indices, dtype=np.int64).reshape(-1)

    def __getitem__(self, index):
        if isinstance(index, (list, tuple, np.ndarray)):
            return [self.dataset[int(i)] for i in self._indices[np.asarray(index, dtype=np.int64)]]
        return self.dataset[int(self._indices[index])]

    def __len__(self):
        return len(self._indices)

    def _get_batch(self, indices):
        inner = getattr(self.dataset, "_get_batch", None)
        return None if inner is None else inner(self._indices[indices])


def random_split(dataset, lengths, generator=None):
    """Split `dataset` into non-overlapping `Subset`s of the given lengths, in a random order.

    `lengths` are counts that add up to ``len(dataset)``, or fractions that add up to 1 (the remainder
    left by rounding down goes one by one to the first subsets, as in PyTorch). The permutation comes from
    tinylazy's seeded cpu generator, or from `generator` (a `numpy.random.Generator`) when given.
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0):
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if any(not isinstance(x, numbers.Integral) or x < 0 for x in lengths) or sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} must be non-negative integers adding up to the "
                         f"dataset's length {n}, or fractions adding up to 1")
    perm = permutation(generator or RNG.generator("cpu"), n)
    perm = perm if type(perm) is np.ndarray else perm.get()
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[start:start + length].tolist()))
        start += length
    return out


# --- collating -------------------------------------------------------------------------------------
def default_collate(batch):
    """Turn a list of samples into a batch, as PyTorch's `default_collate` does.

    - Tensors are stacked along a new first dimension (all must have the same shape and device);
    - NumPy arrays are stacked, keeping their dtype; NumPy scalars keep their dtype;
    - Python bools become a bool tensor, ints an int64 tensor, floats a float64 tensor (as in PyTorch);
    - strings stay a list of strings;
    - dicts collate per key, namedtuples per field (keeping their type), tuples and lists per position
      (giving a list, as in PyTorch): ``[(x0, y0), (x1, y1)] -> [stack(x0, x1), stack(y0, y1)]``.
    """
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        raise TypeError(f"default_collate: expected a list of samples, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("default_collate: the batch is empty")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack_tensors(batch)
    if isinstance(elem, np.ndarray):
        _same_kind(batch, np.ndarray)
        if elem.dtype.kind in "OSUV":
            raise TypeError(f"default_collate: cannot batch NumPy arrays of dtype {elem.dtype}")
        _same_shape([a.shape for a in batch], "NumPy arrays")
        return Tensor(np.stack(batch))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, np.generic):
        return Tensor(np.array(batch, dtype=elem.dtype))
    if isinstance(elem, (bool, numbers.Number)):
        arr = np.asarray(batch)
        kind = arr.dtype.kind
        if kind == "b":
            return Tensor(arr)
        if kind in "iu":
            return Tensor(arr.astype(np.int64))
        if kind == "f":
            return Tensor(arr.astype(np.float64))
        raise TypeError(f"default_collate: cannot batch numbers like {elem!r} (NumPy read them as {arr.dtype})")
    if isinstance(elem, collections.abc.Mapping):
        _same_kind(batch, collections.abc.Mapping)
        keys = list(elem)
        for k, sample in enumerate(batch):
            if set(sample) != set(keys):
                raise ValueError(f"default_collate: sample {k} has keys {sorted(map(str, sample))}, "
                                 f"sample 0 has {sorted(map(str, keys))}")
        out = {key: default_collate([sample[key] for sample in batch]) for key in keys}
        try:
            return type(elem)(out)
        except TypeError:
            return out
    if isinstance(elem, collections.abc.Sequence):
        _same_kind(batch, collections.abc.Sequence)
        lengths = [len(sample) for sample in batch]
        if len(set(lengths)) > 1:
            raise ValueError(f"default_collate: every sample must have the same number of fields, got "
                             f"lengths {lengths}")
        fields = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(elem, tuple) and hasattr(elem, "_fields"):         # a namedtuple keeps its type
            return type(elem)(*fields)
        return fields
    raise TypeError(f"default_collate: don't know how to batch a {type(elem).__name__}; samples may be "
                    "tensors, NumPy arrays, numbers, strings, or tuples/lists/dicts of them "
                    "(or pass collate_fn= to the DataLoader)")


def _same_kind(batch, kind):
    for k, sample in enumerate(batch):
        if not isinstance(sample, kind):
            raise TypeError(f"default_collate: sample 0 is a {type(batch[0]).__name__} but sample {k} is a "
                            f"{type(sample).__name__}")


def _same_shape(shapes, what):
    if len(set(shapes)) > 1:
        k = next(i for i, s in enumerate(shapes) if s != shapes[0])
        raise ValueError(f"default_collate: cannot stack {what} of different shapes: sample 0 has shape "
                         f"{tuple(shapes[0])}, sample {k} has shape {tuple(shapes[k])} (resize or pad them, "
                         "or pass collate_fn= to the DataLoader)")


def _stack_tensors(batch):
    _same_kind(batch, Tensor)
    _same_shape([t.shape for t in batch], "tensors")
    devices = []
    for t in batch:
        if t.device not in devices:
            devices.append(t.device)
    if len(devices) > 1:
        raise RuntimeError(f"default_collate: samples are on different devices ({', '.join(map(str, devices))}); "
                           "put them on one device first")
    if any(t.requires_grad for t in batch):        # keep the graph through the differentiable stack
        from .. import ops
        return ops.stack(batch)
    arrays = [t.array for t in batch]
    with backend.on_device(devices[0]):
        return Tensor(backend.xp_of(arrays[0]).stack(arrays))


def _to_device(obj, dev):
    """`obj` (a tensor, or tuples/lists/dicts of them) with every tensor on device `dev`."""
    if isinstance(obj, Tensor):
        if obj.device == dev:
            return obj
        if obj.requires_grad:
            return obj.to(dev)
        return Tensor(backend.to_device(obj.array, dev))
    if isinstance(obj, dict):
        return type(obj)((k, _to_device(v, dev)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_to_device(v, dev) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, dev) for v in obj)
    return obj


# --- the loader ------------------------------------------------------------------------------------
class DataLoader:
    """Iterate over `dataset` in batches of `batch_size` samples.

    Args:
        dataset: a map-style dataset (``__len__`` and ``__getitem__``): a `Dataset`, or any sequence.
        batch_size: samples per batch (a positive int).
        shuffle: draw a new permutation of the indices at the start of each epoch (each ``iter(loader)``)
            from tinylazy's seeded cpu generator, so ``tl.manual_seed(n)`` makes the order repeatable.
        drop_last: drop the last batch when it has fewer than `batch_size` samples.
        collate_fn: turns a list of samples into a batch (default `default_collate`). Giving one turns
            off the TensorDataset fast path, since it expects samples.
        device: move every tensor of each batch to this device (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        generator: a `numpy.random.Generator` to draw the permutations from instead of tinylazy's.
        sampler: an iterable of indices with a length (e.g. `DistributedSampler`) that decides the order
            instead of `shuffle` (the two are exclusive, as in PyTorch).
        num_workers, pin_memory: accepted so PyTorch code runs unchanged; tinylazy always loads in the main
            process (the fast path gathers a batch with one fancy index, which workers would not speed up).

    Batches are tinylazy tensors (integer labels as int64); a `TensorDataset` gives a list with one tensor
    per dataset tensor, as PyTorch does: ``for X, y in loader: ...``.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None, device=None,
                 generator=None, num_workers=0, pin_memory=False, sampler=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: the dataset ({type(dataset).__name__}) needs __len__ and __getitem__")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got {type(collate_fn).__name__}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be a non-negative integer, got {num_workers!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.device = None if device is None else backend.device(device)
        self.generator = generator
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)

    def __len__(self):
        """The number of batches per epoch."""
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        # The epoch's order is drawn here, when iteration starts, not at the first next().
        n = len(self.dataset)
        if self.sampler is not None:
            order = np.fromiter(iter(self.sampler), np.int64)
        elif self.shuffle:
            order = permutation(self.generator or RNG.generator("cpu"), n)
            if type(order) is not np.ndarray:        # a CuPy generator's permutation lives on its GPU:
                order = order.get()                  # one read per epoch, never one per batch
            order = order.astype(np.int64, copy=False)
        else:
            order = np.arange(n, dtype=np.int64)
        return self._batches(order)

    def _batches(self, order):
        bs = self.batch_size
        stop = len(order) - len(order) % bs if self.drop_last else len(order)
        fetch = getattr(self.dataset, "_get_batch", None) if self.collate_fn is None else None
        collate = self.collate_fn or default_collate
        on_gpu = _one_cuda_device(self.dataset) if fetch is not None else None
        if on_gpu is not None:                       # upload the epoch's order once, not every batch's indices
            order = backend.to_device(order, on_gpu)
        for start in range(0, stop, bs):
            indices = order[start:start + bs]
            batch = fetch(indices) if fetch is not None else None
            if batch is None:
                batch = collate([self.dataset[int(i)] for i in indices])
            if self.device is not None:
                batch = _to_device(batch, self.device)
            yield batch

    def __repr__(self):
        extras = "".join(f", {k}={getattr(self, k)!r}" for k in ("shuffle", "drop_last") if getattr(self, k))
        if self.device is not None:
            extras += f", device='{self.device}'"
        return f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, batch_size={self.batch_size}{extras})"
