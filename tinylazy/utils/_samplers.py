"""Samplers: which dataset indices a `DataLoader` visits, in which order (after `torch.utils.data`).

`DistributedSampler` gives each rank of a data-parallel job its own share of the data set: every rank
draws the same permutation (seeded by ``seed + epoch``), the list is padded by repeating its first indices
until it divides evenly (or cut with ``drop_last=True``), and rank r takes every num_replicas-th index
starting at r. So the shares are disjoint and together cover the data set (padding aside), and every
rank runs the same number of steps, which data-parallel training needs: a rank that ran one step more
would wait forever for the others' gradients. Call `set_epoch(epoch)` before each epoch for a new order.
The permutation comes from NumPy's generator, so its numbers differ from PyTorch's (the rules are its).
"""
import math
import numbers

import numpy as np

__all__ = ["Sampler", "DistributedSampler"]


class Sampler:
    """Base class: an iterable of dataset indices with a length."""

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class DistributedSampler(Sampler):
    """This rank's share of `dataset`'s indices. `num_replicas` and `rank` default to the world size and
    rank of the default process group (`tinylazy.distributed`)."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from .. import distributed as dist
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler: pass num_replicas= and rank=, or call "
                                   "tinylazy.distributed.init_process_group() first")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        for name, v in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"DistributedSampler: {name} must be an integer, got {v!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last, self.epoch = bool(shuffle), int(seed), bool(drop_last), 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)   # drop the tail
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        if not self.drop_last:
            pad = self.total_size - n                         # repeat the first indices (several times if short)
            if pad > 0:
                indices = np.concatenate([indices, np.tile(indices, math.ceil(pad / max(n, 1)))[:pad]])
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas].tolist())

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """The permutation of the next iteration is drawn with seed + epoch (the same on every rank)."""
        self.epoch = int(epoch)
