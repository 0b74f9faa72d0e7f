"""Scenarios that end the whole job on purpose: their test reads stderr and the exit status instead of a
report.
"""
import time

import tinylazy as tl
import tinylazy.distributed as dist
from tinylazy import nn
from tinylazy.nn.parallel import DistributedDataParallel as DDP

from .harness import scenario


@scenario
def abort_forward():
    """Rank 1 raises in its third forward: the job must end (MPI_Abort) with a message, not hang."""
    rank = dist.get_rank()
    ddp = DDP(nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2)))
    for step in range(4):
        x = tl.ones(2, 3)
        if rank == 1 and step == 2:
            x = tl.ones(2, 5)                      # ShapeError in forward, on rank 1 only
        ddp(x).sum().backward()
    return "not reached"


@scenario
def timeout():
    """Rank 1 never joins an all_reduce: rank 0's bounded wait ends the job with a message."""
    if dist.get_rank() == 1:
        time.sleep(60)
    dist.all_reduce(tl.ones(3))
    return "not reached"
