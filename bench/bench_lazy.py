"""The first, materializing forward of a lazy model vs a steady-state forward, and `materialize` on meta.

For a lazy LeNet (batch 64) and a lazy MLP (batch 32): `first` times the forward of a freshly built lazy
model (the construction is untimed setup), `steady` the forward of one already materialized, and
`materialize` the shape-only trace on the meta device plus allocation. torch's Lazy* modules are the peer.
Checks: the inferred parameter shapes equal torch's, the output equals torch's on the same weights, and
each timed call left a model with nothing lazy and a (batch, 10) output.
"""
import functools

import pytest

import workloads as W

CASES = ["tinylazy_first", "tinylazy_steady", "tinylazy_materialize", "torch_first", "torch_steady"]
ROUNDS = 30


@functools.lru_cache(maxsize=None)
def shapes_agree(model, batch_size):
    return W.check_first_forward(model, batch_size)


def run_lazy(benchmark, model, batch_size, name):
    if name.startswith("torch"):
        pytest.importorskip("torch")
    assert shapes_agree(model, batch_size)
    case = W.first_forward(model, batch_size)[name]
    if case.setup is None:
        out = benchmark(case.run)
    else:
        seen = []

        def setup():
            args = case.setup()
            seen.append(args[0])
            return args, {}
        out = benchmark.pedantic(case.run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        net = seen[-1]
        lazy = net.has_uninitialized_params() if hasattr(net, "has_uninitialized_params") else any(
            type(p).__name__ == "UninitializedParameter" for p in net.parameters())
        assert not lazy, f"{name}: parameters still lazy after the call"
    if name.endswith("materialize"):
        assert [tuple(p.shape) for p in out.parameters()] == shapes_agree(model, batch_size)
    else:
        assert tuple(out.shape) == (batch_size, 10)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.benchmark(group="lazy-lenet-forward-b64")
def test_lazy_lenet_forward(benchmark, name):
    run_lazy(benchmark, "lenet", 64, name)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.benchmark(group="lazy-mlp-forward-b32")
def test_lazy_mlp_forward(benchmark, name):
    run_lazy(benchmark, "mlp", 32, name)
