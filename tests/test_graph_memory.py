"""After a backward without retain_graph, the graph holds no arrays: a kept loss keeps neither the saved
tensors nor the intermediate activations alive (a second backward raises, as before); with
retain_graph=True everything stays for the next backward."""
import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn


def _graph():
    """A loss over a few ops, and weak references to the intermediate arrays only its graph holds."""
    x = tl.tensor(np.linspace(-1, 1, 12).reshape(3, 4), requires_grad=True)
    w = tl.tensor(np.ones((4, 5)), requires_grad=True)
    h = x @ w
    a = h.exp()
    b = tl.relu(a * 2 - 3)
    loss = (b * a).sum()
    refs = [weakref.ref(t.array) for t in (h, a, b)]
    return x, w, loss, refs


def test_backward_frees_the_saved_tensors_and_intermediate_activations_of_a_kept_loss():
    x, w, loss, refs = _graph()
    assert all(r() is not None for r in refs)       # alive through the graph alone
    loss.backward()
    assert [r() is None for r in refs] == [True, True, True]
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        loss.backward()


def test_retain_graph_keeps_them_for_a_second_backward():
    x, w, loss, refs = _graph()
    loss.backward(retain_graph=True)
    assert all(r() is not None for r in refs)
    first = x.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-12)
    assert all(r() is None for r in refs)


def test_a_second_backward_through_a_freed_shared_part_raises():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    a = x.exp()
    a.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (a * 2).sum().backward()


def test_kept_losses_of_an_mlp_hold_no_activation_memory():
    tl.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    x, y = tl.randn(128, 64), tl.randint(0, 10, (128,))
    opt = tl.optim.SGD(net.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = tl.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss

    tracemalloc.start()
    try:
        step()                                      # gradients and any buffers exist from here on
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        kept = [step() for _ in range(20)]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_step_activations = 128 * 512 * 4 * 4        # two (128, 512) float32 activations, saved and passed on
    assert len(kept) == 20
    assert grown < per_step_activations, f"20 kept losses hold {grown / 2**20:.1f} MiB"
