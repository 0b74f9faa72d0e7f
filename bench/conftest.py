"""Benchmarks run with pytest-benchmark: `python -m pytest bench --benchmark-only`.
Each workload is run three ways in the same session where it makes sense: tinylazy, hand-written
NumPy (the floor) and PyTorch CPU (the peer, skipped when absent). Compare medians, not absolutes."""
import pytest

import tinylazy as tl


@pytest.fixture(autouse=True)
def _seed():
    tl.manual_seed(0)
