"""Optimizers and learning-rate schedulers: ``optim.SGD``, ``optim.Adam``, ``optim.AdamW``,
``optim.lr_scheduler.StepLR`` / ``CosineAnnealingLR`` / ... (PyTorch's names, arguments and numbers).

Updates run on the raw arrays, in place, without recording a graph: small cpu parameters together in flat
buckets, large ones one by one with `out=` ufuncs, cuda ones through the fused kernels of tinylazy.fast
(via _update.sgd_step / adam_step).
"""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
