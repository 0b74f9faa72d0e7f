"""An Adam step over a model with 100 small parameters (50 x Linear(32, 32): weights and biases).

tinylazy's Adam vs the NumPy floor (every parameter a view of one flat buffer: eleven ufunc calls per step)
vs torch's Adam with foreach=True (its batched implementation, the issue's target) and torch's CPU default
(a loop over the parameters). The gradients are fixed, so each step moves every parameter against the sign
of its gradient: that is checked after timing, and `check_adam` checks beforehand that all of them follow
the reference's trajectory exactly.
"""
import functools

import numpy as np
import pytest

import workloads as W


@functools.lru_cache(maxsize=None)
def trajectories_agree():
    W.check_adam()
    return True


@pytest.mark.parametrize("impl", ["tinylazy", "numpy", "torch", "torch_default"])
@pytest.mark.benchmark(group="adam-100-params")
def test_adam_step(benchmark, impl):
    if impl.startswith("torch"):
        pytest.importorskip("torch")
    assert trajectories_agree()
    cases, params, grads = W.adam_step(("foreach", "default"))
    case = cases[impl]
    benchmark(case.run)
    for k, (before, after, g) in enumerate(zip(params, case.probe(), grads, strict=True)):
        moved = np.sign(before - after)
        assert np.array_equal(moved, np.sign(g)), f"{impl}: parameter {k} did not move against its gradient"
