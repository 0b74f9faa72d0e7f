"""Train steps (forward, cross-entropy, backward, SGD): tinylazy vs hand-written NumPy vs PyTorch CPU.

MLP 784-256-10 at batch 1, 32, 256, 1024 and d2l's LeNet (ReLU + MaxPool) at batch 64 and 256 (plain SGD,
and SGD with momentum 0.9 as in user_regime.py's table), the same weights and batch in all three.
"tinylazy_captured" is tinylazy's step wrapped in `tl.capture` (skipped where tinylazy has no `capture`). Each benchmark checks what it times: before timing, one step from the
shared weights gives the NumPy reference's loss (and `check_*` asserts that tinylazy's and torch's loss,
gradients and updated weights equal the reference's); after timing, repeated SGD steps on the one batch
must have lowered the loss.
"""
import functools
import math

import pytest

import workloads as W

IMPLS = ("tinylazy", "tinylazy_captured", "numpy", "torch")


@functools.lru_cache(maxsize=None)
def reference_loss(model, batch_size, momentum=False):
    """The NumPy loss of the first step; asserts tinylazy and torch agree with it (loss, updated weights)."""
    if model == "mlp":
        return W.check_mlp(batch_size)
    return W.check_lenet(batch_size, W.MOMENTUM if momentum else None)


def run_train(benchmark, model, batch_size, impl, momentum=False):
    if impl == "torch":
        pytest.importorskip("torch")
    capture = impl == "tinylazy_captured"
    if capture and not hasattr(W.tl, "capture"):
        pytest.skip("tl.capture does not exist in this tinylazy")
    if model == "mlp":
        cases = W.mlp_step(batch_size, capture=capture)
    else:
        cases = W.lenet_step(batch_size, W.MOMENTUM if momentum else None, capture=capture)
    case = cases["tinylazy" if capture else impl]
    first = W.as_float(case())                      # one step from the shared weights
    want = reference_loss(model, batch_size, momentum)
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


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="lenet-momentum-step-b64")
def test_lenet_momentum_step_b64(benchmark, impl):
    run_train(benchmark, "lenet", 64, impl, momentum=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.benchmark(group="lenet-momentum-step-b256")
def test_lenet_momentum_step_b256(benchmark, impl):
    run_train(benchmark, "lenet", 256, impl, momentum=True)
