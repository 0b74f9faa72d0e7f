"""Per-op cost: a 20-op elementwise chain on 4x4 tensors plus its backward.

At this size every framework is pure overhead (the arithmetic is nanoseconds), so this measures the
cost of recording and replaying the graph. Hand-written NumPy (forward and the chain rule written out)
is the floor."""
import numpy as np
import pytest

try:
    import tinylazy as tl
except ImportError:         # blocked on purpose in user_regime.py's NumPy and PyTorch processes
    tl = None

X = np.random.default_rng(0).uniform(0.5, 1.5, (4, 4)).astype(np.float32)
ONES = np.ones((4, 4), np.float32)
ONES_TL = tl.ones(4, 4) if tl is not None else None


def chain(x):
    """20 ops: 4 rounds of (mul, add, tanh, mul, sub)."""
    y = x
    for _ in range(4):
        y = (y * 1.01 + 0.1).tanh() * y - 0.5
    return y


def tinylazy_step():
    x = tl.tensor(X, requires_grad=True)
    chain(x).backward(ONES_TL)
    return x.grad


def numpy_step(forward_only=False):
    """The same chain, with its backward written by hand (what an engine must at least do)."""
    saved, y = [], X
    for _ in range(4):
        a = y * np.float32(1.01) + np.float32(0.1)
        t = np.tanh(a)
        saved.append((y, t))
        y = t * y - np.float32(0.5)
    if forward_only:
        return y
    g = ONES
    for y, t in reversed(saved):
        g_t, g_y = g * y, g * t
        g = g_y + g_t * (1 - t * t) * np.float32(1.01)
    return g


@pytest.mark.benchmark(group="chain20-4x4")
def test_chain_tinylazy(benchmark):
    g = benchmark(tinylazy_step)
    np.testing.assert_allclose(g.numpy(), numpy_step(), rtol=1e-5)


@pytest.mark.benchmark(group="chain20-4x4")
def test_chain_numpy(benchmark):
    benchmark(numpy_step)


@pytest.mark.benchmark(group="chain20-4x4")
def test_chain_torch(benchmark):
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(X)
    ones = torch.ones(4, 4)

    def step():
        x = xt.clone().requires_grad_(True)
        chain(x).backward(ones)
        return x.grad

    g = benchmark(step)
    np.testing.assert_allclose(g.numpy(), numpy_step(), rtol=1e-5)
