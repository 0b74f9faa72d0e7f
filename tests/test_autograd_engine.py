"""The engine's walk (autograd.backward): topological order, fan-out, and the optional gradient-reuse hook
(grad_reuse.py), which must give exactly the gradients of the plain rules."""
import numpy as np
import pytest

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy import autograd, nn


@pytest.fixture(params=[True, False], ids=["reuse", "plain"])
def rules(request, monkeypatch):
    monkeypatch.setattr(autograd, "gradient_reuse", request.param)
    return request.param


def _net_grads():
    tl.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = tl.randn(7, 6)
    loss = F.cross_entropy(net(x), tl.tensor([0, 1, 2, 0, 1, 2, 0]))
    loss.backward()
    return [p.grad.numpy().copy() for p in net.parameters()]


def test_reuse_hook_gives_the_plain_rules_gradients(monkeypatch):
    monkeypatch.setattr(autograd, "gradient_reuse", True)
    reused = _net_grads()
    monkeypatch.setattr(autograd, "gradient_reuse", False)
    plain = _net_grads()
    for a, b in zip(reused, plain):
        np.testing.assert_array_equal(a, b)


def test_diamond_and_shared_gradient_arrays(rules):
    # y feeds two consumers; Add hands one array to both inputs; x is reached by three paths
    x = tl.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x * 2.0
    z = (y + y).relu() + y * x
    z.sum().backward()
    xs = np.array([1.0, -2.0, 3.0])
    expected = 4.0 * (xs > 0) + 4.0 * xs          # d/dx relu(4x) + 2x**2
    np.testing.assert_allclose(x.grad.numpy(), expected)
    assert x.grad.array is not y.array


def test_leaf_grad_is_never_the_callers_seed(rules):
    x = tl.ones(3, requires_grad=True)
    seed = tl.tensor([1.0, 2.0, 3.0])
    (x * 1.0).backward(seed)
    x.grad.array[0] = 100.0
    assert seed.tolist() == [1.0, 2.0, 3.0]
    y = tl.ones(2, requires_grad=True)
    s = tl.ones(2)
    y.backward(s)                             # a leaf as the root: its .grad is a copy of the seed
    y.grad.array += 1
    assert s.tolist() == [1.0, 1.0]


def test_two_leaves_fed_by_one_add_get_separate_arrays(rules):
    a = tl.ones(2, requires_grad=True)
    b = tl.ones(2, requires_grad=True)
    (a + b).sum().backward()
    assert a.grad.array is not b.grad.array
    a.grad.array += 1
    assert b.grad.tolist() == [1.0, 1.0]


def test_topological_order_lists_inputs_before_consumers():
    x = tl.ones(2, requires_grad=True)
    a = x * 2.0
    b = a.exp()
    c = a + b
    order = autograd._topological_order(c.sum().grad_fn)
    pos = {node: k for k, node in enumerate(order)}
    assert pos[a.grad_fn] < pos[b.grad_fn] < pos[c.grad_fn]
    assert len(order) == 4                    # mul, exp, add, sum: each once


def test_second_backward_without_retain_graph_raises_before_touching_grads(rules):
    x = tl.ones(2, requires_grad=True)
    y = (x * 3.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    assert x.grad.tolist() == [3.0, 3.0]
