"""Lazy rules 1-6 of API §6 (the lazy parameter, no class swap, inference, in-place materialization,
device/dtype, atomic first call, inference once). Rules 7-12 are in test_lazy_materialize.py."""
import copy
import inspect

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn
from tinylazy import backend
import tinylazy.nn.functional as F


def mlp(out=10):
    return nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(out))


def lazy_names(model):
    return [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if nn.is_lazy(p)]


# --- the lazy parameter itself ---------------------------------------------------------------------
def test_lazy_parameter_state_and_repr():
    net = mlp()
    w = net[0].weight
    assert isinstance(w, nn.Parameter) and isinstance(w, tl.Tensor)
    assert w.is_lazy and nn.is_lazy(w) and not nn.is_lazy(tl.zeros(2))
    assert w.partial_shape == (256, None)
    assert repr(w) == "Parameter(shape=(256, ?), lazy)"
    assert repr(net[0].bias) == "Parameter(shape=(256,), lazy)"
    assert w.requires_grad and w.grad is None


@pytest.mark.parametrize("use", [lambda p: p.shape, lambda p: p.array, lambda p: p.numel(), lambda p: p + 1,
                                 lambda p: tl.zeros(3, 256) @ p, lambda p: p.sum(), lambda p: p.numpy(),
                                 lambda p: p * 2.0, lambda p: F.linear(tl.zeros(2, 5), p)])
def test_using_a_lazy_parameter_raises_a_clear_error(use):
    net = mlp()
    with pytest.raises(nn.UninitializedParameterError) as info:
        use(net[0].weight)
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "'0.weight'" in msg and "in_features" in msg            # the path and the unknown size
    assert "run one forward on an example first" in msg and "materialize" in msg


def test_error_names_path_in_nested_models():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.LazyLinear(4), nn.ReLU())
            self.head = nn.LazyLinear(2)

    net = nn.Sequential(Net())
    with pytest.raises(nn.UninitializedParameterError, match=r"'0\.body\.0\.weight'"):
        net[0].body[0].weight.shape
    with pytest.raises(nn.UninitializedParameterError, match=r"'0\.head\.bias'"):
        net[0].head.bias.array


# --- rule 1: laziness is a state, not a class -------------------------------------------------------
@pytest.mark.parametrize("make, cls, size", [
    (lambda: nn.LazyLinear(10), nn.Linear, "in_features"),
    (lambda: nn.LazyConv2d(6, 5), nn.Conv2d, "in_channels"),
    (lambda: nn.LazyBatchNorm1d(), nn.BatchNorm1d, "num_features"),
    (lambda: nn.LazyBatchNorm2d(), nn.BatchNorm2d, "num_features"),
    (lambda: nn.LazyLayerNorm(), nn.LayerNorm, "normalized_shape"),
])
def test_rule1_no_class_swapping(make, cls, size):
    m = make()
    assert type(m) is cls and getattr(m, size) is None
    ids = [id(p) for p in m.parameters()]
    assert m.has_uninitialized_params()
    m(tl.rand(2, 3, 8, 8) if cls in (nn.Conv2d, nn.BatchNorm2d) else tl.rand(4, 3))
    assert type(m) is cls and getattr(m, size) is not None
    assert [id(p) for p in m.parameters()] == ids
    assert not m.has_uninitialized_params()


def test_rule1_linear_none_is_lazylinear():
    a, b = nn.Linear(None, 10), nn.LazyLinear(10)
    assert type(a) is type(b) is nn.Linear
    assert repr(a) == repr(b) == "Linear(in_features=None, out_features=10, bias=True)"


# --- rule 2: inference from the first input -----------------------------------------------------------
def test_rule2_inference_and_repr():
    net = mlp()
    assert repr(net[0]) == "Linear(in_features=None, out_features=256, bias=True)"
    out = net(tl.rand(2, 20))
    assert out.shape == (2, 10)
    assert repr(net[0]) == "Linear(in_features=20, out_features=256, bias=True)"
    assert net[0].in_features == 20 and net[2].in_features == 256
    assert net[0].weight.shape == (256, 20) and net[0].weight.partial_shape == (256, 20)


def test_rule2_conv_batchnorm_layernorm_inference():
    net = nn.Sequential(nn.LazyConv2d(6, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(), nn.Flatten(),
                        nn.LazyLayerNorm(), nn.LazyLinear(3))
    out = net(tl.rand(2, 4, 5, 5))
    assert out.shape == (2, 3)
    assert net[0].in_channels == 4 and net[0].weight.shape == (6, 4, 3, 3)
    assert net[1].num_features == 6 and net[1].running_mean.shape == (6,)
    assert net[4].normalized_shape == (150,) and net[5].in_features == 150


def test_rule2_linear_on_higher_rank_input():
    lin = nn.LazyLinear(3)
    assert lin(tl.rand(2, 5, 7)).shape == (2, 5, 3)
    assert lin.in_features == 7


# --- rule 3: materialization in place ---------------------------------------------------------------------
def test_rule3_same_objects_hooks_and_tied_references():
    net = mlp()
    before = list(net.parameters())
    w = net[0].weight
    seen = []
    net[0].register_forward_hook(lambda m, args, out: seen.append(m.weight.shape))
    held = {"opt_state": [(p, "momentum buffer later") for p in net.parameters()]}   # an optimizer's view
    net(tl.rand(3, 7))
    after = list(net.parameters())
    assert all(a is b for a, b in zip(before, after)) and len(before) == len(after)
    assert w is net[0].weight and not w.is_lazy and w.shape == (256, 7)
    assert seen == [(256, 7)]
    assert all(not p.is_lazy for p, _ in held["opt_state"])


def test_rule3_optimizer_built_before_first_forward():
    optim = pytest.importorskip("tinylazy.optim")
    if not hasattr(optim, "SGD"):
        pytest.skip("tinylazy.optim.SGD is not written yet")
    net = mlp(1)
    opt = optim.SGD(net.parameters(), lr=0.1)
    X, y = tl.rand(8, 5), tl.rand(8, 1)
    loss = ((net(X) - y) ** 2).mean()
    before = net[0].weight.array.copy()
    loss.backward()
    opt.step()
    assert not np.array_equal(before, net[0].weight.array)


# --- rule 4: device and dtype -----------------------------------------------------------------------------
def test_rule4_allocated_on_input_device_and_float_dtype(device):
    net = mlp()
    x = tl.rand(2, 20, dtype=tl.float64, device=device)
    out = net(x)
    for p in net.parameters():
        assert p.device == device and p.dtype == tl.float64
        assert type(p.array) is type(x.array)                       # NumPy on cpu, CuPy on a GPU
    assert out.device == device and out.dtype == tl.float64


def test_rule4_allocation_goes_directly_to_the_device(device, monkeypatch):
    calls = []
    real = backend.empty
    monkeypatch.setattr(backend, "empty", lambda shape, dtype, dev: calls.append(str(backend.device(dev))) or
                        real(shape, dtype, dev))
    nn.LazyLinear(4)(tl.rand(2, 3, device=device))
    assert calls == [str(backend.device(device))] * 2                # weight and bias, nowhere else


def test_rule4_explicit_placement_wins():
    net = mlp().double()
    assert net[0].weight.dtype == tl.float64 and net[0].weight.is_lazy          # placement is known
    net(tl.rand(2, 20, dtype=tl.float64))
    assert all(p.dtype == tl.float64 for p in net.parameters())
    net = mlp().to(tl.float64).to("cpu")
    assert net[0].weight.device == "cpu"
    with pytest.raises(TypeError):                                # float32 input, float64 weights
        net(tl.rand(2, 20))
    assert net.has_uninitialized_params()                         # the failed call was rolled back
    net = nn.Linear(None, 3, device="cpu", dtype=tl.float64)
    net(tl.rand(2, 4, dtype=tl.float64))
    assert net.weight.dtype == tl.float64


def test_rule4_integer_and_bool_input_rejected_with_advice():
    for x in (tl.arange(6).reshape(2, 3), tl.zeros(2, 3) > 0):
        net = mlp()
        with pytest.raises(TypeError, match=r"floating-point.*convert.*float\(\)"):
            net(x)
        assert lazy_names(net) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_rule4_input_on_another_device_after_materialization_names_both():
    net = mlp()
    net(tl.rand(2, 20))
    with pytest.raises(RuntimeError) as info:
        net(tl.empty(2, 20, device="meta"))
    assert "meta" in str(info.value) and "cpu" in str(info.value) and "Linear '0'" in str(info.value)


def test_rule4_cuda_input_allocates_on_cuda(device):
    if device == "cpu":
        pytest.skip("needs a GPU")
    net = mlp()
    net(tl.rand(2, 20, device=device))
    cp = backend.cupy_module()
    assert all(isinstance(p.array, cp.ndarray) for p in net.parameters())
    with pytest.raises(RuntimeError, match="cpu"):
        net(tl.rand(2, 20))


# --- rule 5: validate before allocating; the first call is atomic -------------------------------------------
def test_rule5_error_in_a_later_layer_rolls_everything_back():
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(4), nn.Linear(3, 2))
    fixed = net[3].weight.array.copy()
    with pytest.raises(nn.ShapeError):
        net(tl.rand(2, 5))
    assert lazy_names(net) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert net[0].in_features is None and net[2].in_features is None
    assert repr(net[0]) == "Linear(in_features=None, out_features=8, bias=True)"
    assert net[0].weight.partial_shape == (8, None)
    assert np.array_equal(net[3].weight.array, fixed)
    net[3] = nn.LazyLinear(2)                          # fix the model: the next call works from scratch
    assert net(tl.rand(2, 6)).shape == (2, 2) and net[0].in_features == 6


def test_rule5_error_in_custom_forward_after_the_layers_rolls_back():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.LazyLinear(4), nn.LazyBatchNorm1d()

        def forward(self, x):
            y = self.b(self.a(x))
            raise KeyError("boom after materializing")

    net = Net()
    with pytest.raises(KeyError):
        net(tl.rand(3, 5))
    assert sorted(lazy_names(net)) == sorted(["a.weight", "a.bias", "b.weight", "b.bias", "b.running_mean",
                                              "b.running_var", "b.num_batches_tracked"])
    assert net.a.in_features is None and net.b.num_features is None


@pytest.mark.parametrize("make, x, error", [
    (lambda: nn.LazyConv2d(6, 3), tl.rand(2, 3, 8), None),          # 3-D is fine (unbatched): control
    (lambda: nn.LazyConv2d(6, 3), tl.rand(8, 8), nn.ShapeError),     # wrong rank
    (lambda: nn.LazyConv2d(6, 3), tl.rand(1, 2, 3, 8, 8), nn.ShapeError),
    (lambda: nn.LazyConv2d(6, 3, groups=3), tl.rand(2, 4, 8, 8), ValueError),   # groups do not divide
    (lambda: nn.LazyConv2d(6, 5), tl.rand(1, 3, 3, 3), nn.ShapeError),          # kernel larger than input
    (lambda: nn.LazyBatchNorm2d(), tl.rand(2, 3), nn.ShapeError),
    (lambda: nn.LazyBatchNorm1d(), tl.rand(2, 3, 4, 5), nn.ShapeError),
])
def test_rule5_validation_happens_before_any_allocation(make, x, error, monkeypatch):
    layer = nn.Sequential(make())
    allocations = []
    real = backend.empty
    monkeypatch.setattr(backend, "empty", lambda *a: allocations.append(a) or real(*a))
    if error is None:
        layer(x)
        assert allocations
        return
    with pytest.raises(error) as info:
        layer(x)
    assert allocations == [] and "'0'" in str(info.value)
    assert layer.has_uninitialized_params()


def test_rule5_validation_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"4 channels.*groups=3"):
        nn.LazyConv2d(6, 3, groups=3)(tl.rand(2, 4, 8, 8))
    with pytest.raises(nn.ShapeError, match=r"3-D \(C, H, W\) or 4-D"):
        nn.LazyConv2d(6, 3)(tl.rand(8, 8))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.LazyConv2d(5, 3, groups=2)


# --- rule 6: inference happens once ------------------------------------------------------------------------
def test_rule6_another_feature_size_raises_before_computing(monkeypatch):
    net = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Sequential(nn.LazyLinear(4)))
    net(tl.rand(2, 20))
    calls = []
    real = F.linear
    monkeypatch.setattr(F, "linear", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(nn.ShapeError) as info:
        net(tl.rand(2, 21))
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, tl.ShapeError)
    assert "Linear '0'" in msg and "in_features=20" in msg and "21" in msg
    assert calls == []                                       # nothing was computed
    with pytest.raises(nn.ShapeError, match=r"Linear '2\.0'.*in_features=8.*got 9"):
        net[2](tl.rand(2, 9))
    assert net(tl.rand(5, 20)).shape == (5, 4)               # other batch sizes are fine


def test_rule6_for_conv_norm_layers():
    conv, bn, ln = nn.LazyConv2d(2, 3), nn.LazyBatchNorm1d(), nn.LazyLayerNorm()
    conv(tl.rand(1, 3, 5, 5)), bn(tl.rand(4, 3)), ln(tl.rand(2, 6))
    with pytest.raises(nn.ShapeError, match="in_channels=3"):
        conv(tl.rand(1, 4, 5, 5))
    with pytest.raises(nn.ShapeError, match="num_features=3"):
        bn(tl.rand(4, 5))
    with pytest.raises(nn.ShapeError, match=r"normalized_shape=\(6,\)"):
        ln(tl.rand(2, 7))


def test_lazy_names_answer_isinstance_like_pytorch_while_the_class_stays_the_same():
    pairs = [(nn.LazyLinear(3), nn.LazyLinear, nn.Linear, (2, 4)),
             (nn.LazyConv2d(2, 3), nn.LazyConv2d, nn.Conv2d, (1, 3, 5, 5)),
             (nn.LazyBatchNorm1d(), nn.LazyBatchNorm1d, nn.BatchNorm1d, (4, 3)),
             (nn.LazyBatchNorm2d(), nn.LazyBatchNorm2d, nn.BatchNorm2d, (2, 3, 4, 4)),
             (nn.LazyLayerNorm(), nn.LazyLayerNorm, nn.LayerNorm, (2, 5))]
    for m, lazy_name, cls, shape in pairs:
        assert type(m) is cls                                  # rule 1: no class of its own
        assert isinstance(m, lazy_name) and isinstance(m, cls)
        assert not isinstance(nn.Identity(), lazy_name)
        m(tl.randn(*shape))
        assert not isinstance(m, lazy_name) and isinstance(m, cls)   # materialized: as PyTorch's class swap
    assert not isinstance(nn.Linear(2, 3), nn.LazyLinear)
    assert not isinstance(nn.LazyLinear(3), nn.LazyConv2d)
    assert str(inspect.signature(nn.LazyLinear)) == "(out_features, bias=True, **kwargs)"


def test_a_lazy_parameter_registered_after_use_is_materialized_by_the_next_call():
    m = nn.Linear(3, 2)
    m(tl.randn(4, 3))                          # materialized; prepare now skips its scan of the members
    m.weight = nn.Parameter.lazy((2, None))
    assert m.has_uninitialized_params()
    out = m(tl.randn(4, 3))
    assert out.shape == (4, 2) and m.weight.shape == (2, 3) and not m.has_uninitialized_params()


def test_a_failed_first_call_that_reaches_a_shared_layer_leaves_it_lazy_and_usable():
    shared = nn.LazyLinear(4)
    net = nn.Sequential(shared, nn.ReLU(), shared)           # 2nd use: in_features 4 != inferred size
    with pytest.raises(nn.ShapeError):
        net(tl.randn(2, 3))
    assert shared.has_uninitialized_params() and shared.in_features is None
    good = nn.Sequential(shared, nn.ReLU(), nn.Linear(4, 1))
    assert good(tl.randn(2, 3)).shape == (2, 1)


def test_prepare_checks_every_input_after_a_good_one_and_after_a_move():
    m = nn.Linear(3, 2)
    x = tl.randn(4, 3)
    m(x)
    m(x)                                                      # the same kind of input again
    with pytest.raises(nn.ShapeError, match="in_features=3"):
        m(tl.randn(4, 5))                                     # another shape: checked in full
    m.to("meta")
    with pytest.raises(RuntimeError, match="the input is on cpu but the parameters are on meta"):
        m(x)


def test_a_copy_of_a_lazy_parameter_has_its_own_lazy_state():
    m = nn.LazyLinear(3)
    nn.init.normal_(m.weight)
    w = copy.copy(m.weight)
    assert w.is_lazy and w._lazy is not m.weight._lazy and w.partial_shape == (3, None)
    nn.init.zeros_(w)                                         # recorded on the copy only
    assert len(w._lazy.deferred) == 2 and len(m.weight._lazy.deferred) == 1
