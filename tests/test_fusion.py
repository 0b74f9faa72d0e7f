"""Speed features that must not change a single number: the activation epilogue that nn.Sequential fuses into
a preceding Linear/Conv2d, and the engine's gradient ownership (in-place ReLU backward, in-place sums)."""
import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn
from tinylazy.autograd import Function
from tinylazy.nn.layers.container import fused_activation

from helpers import rand, torch

ACTS = [(nn.ReLU, "relu"), (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"), (nn.GELU, "gelu"),
        (lambda: nn.GELU(approximate="tanh"), "gelu_tanh")]


def _copy_params(src, dst):
    for p, q in zip(src.parameters(), dst.parameters()):
        q.array[...] = p.array


def _run(net, x, g):
    """Forward, backward with the output gradient g; returns the output and every gradient (host arrays)."""
    xt = tl.tensor(x, requires_grad=True)
    out = net(xt)
    out.backward(tl.tensor(g))
    return [out.detach().numpy()] + [xt.grad.numpy()] + [p.grad.numpy() for p in net.parameters()]


class _Unfused(nn.Module):
    """Runs the same modules one by one (what Sequential did before fusing)."""
    def __init__(self, seq):
        super().__init__()
        self.layers = list(seq)

    def forward(self, x):
        for m in self.layers:
            x = m(x)
        return x


@pytest.mark.parametrize("act_cls,name", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_sequential_linear_activation_is_fused_and_bit_identical(act_cls, name, dtype, bias):
    tl.manual_seed(0)
    net = nn.Sequential(nn.Linear(7, 5, bias=bias), act_cls(), nn.Linear(5, 3))
    net = net.double() if dtype == np.float64 else net
    assert fused_activation(net[0], net[1]) == name
    x, g = rand((4, 7), dtype, seed=1), rand((4, 3), dtype, seed=2)
    fused = _run(net, x, g)
    for p in net.parameters():
        p.grad = None
    plain = _run(_Unfused(net), x, g)
    for a, b in zip(fused, plain):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_fused_pair_is_one_node_and_keeps_the_product_unchanged_when_not_owned():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    x = tl.tensor(rand((2, 3), np.float32), requires_grad=True)
    y = net(x)
    assert type(y.grad_fn).__name__ == "Linear" and y.grad_fn.act == "relu"
    g = rand((2, 4), np.float32, seed=3)
    keep = g.copy()
    y.backward(tl.from_numpy(g))                   # the caller's gradient array: never overwritten
    assert np.array_equal(g, keep)


@pytest.mark.parametrize("act_cls,name", ACTS)
def test_sequential_conv_activation_is_fused_and_bit_identical(act_cls, name):
    tl.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), act_cls(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3, bias=False),
                        act_cls(), nn.Flatten(), nn.LazyLinear(2)).double()
    x, g = rand((3, 2, 8, 8), seed=4), rand((3, 2), seed=5)
    net(tl.tensor(x))                             # materialize the lazy Linear
    assert fused_activation(net[0], net[1]) == name and fused_activation(net[3], net[4]) == name
    fused = _run(net, x, g)
    for p in net.parameters():
        p.grad = None
    plain = _run(_Unfused(net), x, g)
    for a, b in zip(fused, plain):
        assert np.array_equal(a, b)


def test_fused_lazy_model_equals_torch():
    th = torch()
    tl.manual_seed(0)
    net = nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(6), nn.ReLU(), nn.LazyLinear(2))
    x = rand((2, 1, 6, 6), seed=6)
    net.double()(tl.tensor(x))
    tnet = th.nn.Sequential(th.nn.Conv2d(1, 4, 3), th.nn.ReLU(), th.nn.Flatten(), th.nn.Linear(64, 6), th.nn.ReLU(),
                            th.nn.Linear(6, 2)).double()
    with th.no_grad():
        for p, q in zip(net.parameters(), tnet.parameters()):
            q.copy_(th.from_numpy(p.array))
    xt = tl.tensor(x, requires_grad=True)
    out = net(xt)
    (out * out).sum().backward()
    xth = th.from_numpy(x).requires_grad_(True)
    tout = tnet(xth)
    (tout * tout).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(xt.grad.numpy(), xth.grad.numpy(), rtol=1e-10, atol=1e-13)
    for p, q in zip(net.parameters(), tnet.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_hooks_and_overridden_forwards_turn_fusion_off():
    lin, act = nn.Linear(3, 4), nn.ReLU()
    seen = []
    handle = act.register_forward_hook(lambda m, args, out: seen.append((args[0].shape, out.shape)))
    net = nn.Sequential(lin, act)
    assert fused_activation(lin, act) is None
    net(tl.randn(2, 3))
    assert seen == [((2, 4), (2, 4))]              # the ReLU ran as a module of its own
    handle.remove()
    assert fused_activation(lin, act) == "relu"
    pre = lin.register_forward_pre_hook(lambda m, args: None)
    assert fused_activation(lin, act) is None
    pre.remove()

    class LeakyRelu(nn.ReLU):                      # a subclass with its own forward runs as written
        def forward(self, x):
            return tl.where(x > 0, x, x * 0.5)

    class Scaled(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2.0

    assert fused_activation(lin, LeakyRelu()) is None and fused_activation(Scaled(3, 4), act) is None
    net = nn.Sequential(nn.Linear(3, 4), LeakyRelu())
    x = tl.tensor([[-1.0, 2.0, 3.0]])
    with tl.no_grad():
        out, r = net(x).numpy(), net[0](x).numpy()
    np.testing.assert_array_equal(out, np.where(r > 0, r, r * 0.5))


def test_gelu_module_names_its_epilogue():
    lin = nn.Linear(2, 2)
    assert fused_activation(lin, nn.GELU()) == "gelu"
    assert fused_activation(lin, nn.GELU(approximate="tanh")) == "gelu_tanh"


def test_activation_argument_is_checked():
    with pytest.raises(ValueError, match="linear: unknown activation 'swish'"):
        nn.functional.linear(tl.randn(2, 3), tl.randn(4, 3), activation="swish")
    with pytest.raises(ValueError, match="conv2d: unknown activation"):
        nn.functional.conv2d(tl.randn(1, 1, 4, 4), tl.randn(1, 1, 3, 3), activation="elu")


def test_sequential_with_fusion_materializes_on_meta_and_summary_sees_every_layer():
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
    net.materialize((5, 3))
    assert net[0].weight.shape == (8, 3) and net[2].weight.shape == (2, 8)
    text = str(net.summary((1, 3)))
    assert "ReLU" in text and "[1, 8]" in text


# --- gradient ownership in the engine --------------------------------------------------------------
class _Spy(Function):
    """Identity that records whether the engine let it overwrite the incoming gradient."""
    overwrites_grad = True
    seen = []

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        _Spy.seen.append(self.grad_owned)
        return g.copy()


def test_engine_reports_ownership_of_incoming_gradients():
    x = tl.tensor([1.0, -2.0, 3.0], requires_grad=True)
    _Spy.seen = []
    _Spy.apply(x).sum().backward()                 # from Sum (fresh): owned
    _Spy.apply(x).backward(tl.ones(3))             # the caller's gradient: not owned
    y = _Spy.apply(x)
    (y + x).sum().backward()                       # Add hands the same array to both inputs: not owned
    z = _Spy.apply(x)
    (z * 2.0 + z.exp()).sum().backward()           # a sum the engine made: owned
    assert _Spy.seen == [True, False, False, True]


def test_relu_backward_never_corrupts_a_shared_gradient():
    th = torch()
    x0 = rand((5, 4), seed=7)
    x = tl.tensor(x0, requires_grad=True)
    y = tl.relu(x)
    (y + x * 2.0).sum().backward()                 # the relu and the mul get the same array from Add
    xt = th.from_numpy(x0).requires_grad_(True)
    (th.relu(xt) + xt * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("fused", [False, True])
def test_relu_backward_of_non_finite_values_equals_torch(device, fused):
    """PyTorch's ReLU gradient is 0 where the output is <= 0 and the incoming gradient elsewhere: a NaN or inf
    gradient of an off unit becomes 0, a NaN input passes its gradient. Both as tl.relu and fused into a
    Linear by Sequential (the in-place backward), bit for bit. The Linear is 1 -> 1 with weight 1, so that
    no product mixes the rows."""
    th = torch()
    x0 = np.array([[-1.0], [0.0], [-0.0], [2.0], [np.nan], [-3.0], [4.0], [np.inf]])
    g0 = np.array([[np.nan], [np.inf], [-np.inf], [np.nan], [5.0], [6.0], [-np.inf], [7.0]])
    xt = th.from_numpy(x0).requires_grad_(True)
    x = tl.tensor(x0, device=device, requires_grad=True)
    if fused:
        net = nn.Sequential(nn.Linear(1, 1, bias=False, dtype=tl.float64), nn.ReLU()).to(device)
        net[0].weight.array[...] = 1.0
        tnet = th.nn.Sequential(th.nn.Linear(1, 1, bias=False, dtype=th.float64), th.nn.ReLU())
        with th.no_grad():
            tnet[0].weight.fill_(1.0)
    else:
        net, tnet = tl.relu, th.relu
    with np.errstate(invalid="ignore"):                      # NaN * 1 in the products
        y = net(x)
        assert not fused or y.grad_fn.act == "relu"
        y.backward(tl.tensor(g0, device=device))
    tnet(xt).backward(th.from_numpy(g0))
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())
    assert np.isnan(x.grad.numpy()[3, 0]) and x.grad.numpy()[0, 0] == 0 and x.grad.numpy()[4, 0] == 5.0


def test_gradients_summed_in_place_equal_torch():
    th = torch()
    x0 = rand((3, 3), seed=8)
    x = tl.tensor(x0, requires_grad=True)
    h = x * 3.0
    out = h.exp() + h.sin() + h.cos() + tl.relu(h)      # h's node receives four gradients
    out.backward(tl.ones(3, 3))
    xt = th.from_numpy(x0).requires_grad_(True)
    ht = xt * 3.0
    (ht.exp() + ht.sin() + ht.cos() + th.relu(ht)).backward(th.ones(3, 3, dtype=th.float64))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-13)


@pytest.mark.parametrize("act_cls,name", ACTS)
def test_fused_sequential_on_each_device_equals_the_unfused_modules(device, act_cls, name):
    """On cuda the epilogue is the fused bias+activation kernel (kernels/elementwise.cu); its bias gradient
    sums in another order than CuPy's sum, so there the agreement is to rounding."""
    tl.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act_cls(), nn.Flatten(), nn.Linear(64, 5), act_cls(),
                        nn.Linear(5, 2)).double().to(device)
    x, g = rand((2, 3, 4, 4), seed=9), rand((2, 2), seed=10)

    def run(model):
        xt = tl.tensor(x, device=device, requires_grad=True)
        out = model(xt)
        out.backward(tl.tensor(g, device=device))
        grads = [xt.grad] + [p.grad for p in net.parameters()]
        return [tl.backend.to_device(t.array, "cpu") for t in [out.detach()] + grads]

    fused = run(net)
    for p in net.parameters():
        p.grad = None
    plain = run(_Unfused(net))
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
