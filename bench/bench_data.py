"""DataLoader throughput: one shuffled epoch over the bundled Fashion-MNIST subset (2,000 images), batch 64.

tinylazy's DataLoader vs a plain NumPy loop (a permutation and one fancy index per batch: the floor) vs
torch's DataLoader over a TensorDataset of the same arrays. Check: every epoch visits each sample exactly
once (sample count, label sum and pixel sum equal the dataset's).
"""
import functools

import pytest

import workloads as W


@functools.lru_cache(maxsize=None)
def epoch_totals():
    return W.check_dataloader(W.dataloader_epoch())


@pytest.mark.parametrize("impl", ["tinylazy", "numpy", "torch"])
@pytest.mark.benchmark(group="dataloader-fashion-subset-b64")
def test_dataloader_epoch(benchmark, impl):
    if impl == "torch":
        pytest.importorskip("torch")
    want = epoch_totals()
    case = W.dataloader_epoch()[impl]
    n, labels, pixels = benchmark(case.run)
    assert (n, labels) == want[:2]
    assert abs(pixels - want[2]) <= 1e-3 * want[2]
