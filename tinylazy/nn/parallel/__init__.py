"""`nn.parallel`: data parallelism over processes (`DistributedDataParallel`, see distributed.py)."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
