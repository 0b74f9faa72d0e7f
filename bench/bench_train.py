"""Train steps (forward, cross-entropy, backward, SGD): tinylazy vs hand-written NumPy vs PyTorch CPU.

MLP 784-256-10 at batch 1, 32, 256, 1024 and d2l's LeNet (ReLU + MaxPool) at batch 64 and 256, the same
weights and batch in all three. Each benchmark checks what it times: before timing, one step from the
shared weights gives the NumPy reference's loss (and `check_*` asserts that tinylazy's and torch's loss,
gradients and updated weights equal the reference's); after timing, repeated SGD steps on the one batch
must have lowered the loss.
"""
import functools
import math

import pytest

import workloads as W

IMPLS = ("tinylazy", "numpy", "torch")


@functools.lru_cache(maxsize=None)
def reference_loss(model, batch_size):
    """The NumPy loss of the first step; asserts tinylazy and torch agree with it (loss, updated weights)."""
    return (W.check_mlp if model == "mlp" else W.check_lenet)(batch_size)


def run_train(benchmark, model, batch_size, impl):
    if impl == "torch":
        pytest.importorskip("torch")
    build = W.mlp_step if model == "mlp" else W.lenet_step
    case = build(batch_size)[impl]
    first = W.as_float(case())                      # one step from the shared weights
    want = reference_loss(model, batch_size)
    assert math.isclose(first, want, rel_tol=1e-4), f"{impl}: first loss {first} != reference {want}"
    last = W.as_float(benchmark(case.run))
    assert math.isfinite(last) and last < first, f"{impl}: SGD on one batch did not lower the loss ({first} -> {last})"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="mlp-step-b1")
def test_mlp_step_b1(benchmark, impl):
    run_train(benchmark, "mlp", 1, impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="mlp-step-b32")
def test_mlp_step_b32(benchmark, impl):
    run_train(benchmark, "mlp", 32, impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="mlp-step-b256")
def test_mlp_step_b256(benchmark, impl):
    run_train(benchmark, "mlp", 256, impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="mlp-step-b1024")
def test_mlp_step_b1024(benchmark, impl):
    run_train(benchmark, "mlp", 1024, impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="lenet-step-b64")
def test_lenet_step_b64(benchmark, impl):
    run_train(benchmark, "lenet", 64, impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="lenet-step-b256")
def test_lenet_step_b256(benchmark, impl):
    run_train(benchmark, "lenet", 256, impl)
