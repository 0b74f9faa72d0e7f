"""nn.init: formulas (against PyTorch's), statistics, in place on the tensor's device, deferred on lazy ones."""
import math

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn
from tinylazy.nn import init


def big(device, *shape, dtype=tl.float32):
    return nn.Parameter(tl.empty(*shape, dtype=dtype, device=device))


def host(t):
    return np.asarray(tl.backend.to_device(t.array, "cpu"), dtype=np.float64)


@pytest.mark.parametrize("name, param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                         ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                         ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain_equals_pytorch(name, param):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def test_calculate_gain_rejects_unknown():
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swishy")


@pytest.mark.parametrize("shape, fans", [((4, 3), (3, 4)), ((6, 2, 5, 5), (50, 150)), ((2, 3, 4), (12, 8))])
def test_fans(shape, fans):
    assert init._calculate_fan_in_and_fan_out(tl.empty(*shape)) == fans
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(tl.empty(5))


def test_init_functions_act_in_place_on_the_device(device):
    p = big(device, 64, 32)
    array = p.array
    for fn, args in [(init.uniform_, (-1, 1)), (init.normal_, (0, 1)), (init.constant_, (0.3,)), (init.zeros_, ()),
                     (init.ones_, ()), (init.xavier_uniform_, ()), (init.xavier_normal_, ()),
                     (init.kaiming_uniform_, ()), (init.kaiming_normal_, ()), (init.trunc_normal_, ()), (init.eye_, ())]:
        assert fn(p, *args) is p
        assert p.array is array and p.device == device and p.dtype == tl.float32      # in place
        assert p.requires_grad and p.grad_fn is None                                # no graph recorded


def test_values_and_bounds(device):
    p = big(device, 400, 300)
    init.constant_(p, 0.25)
    assert np.all(host(p) == 0.25)
    init.zeros_(p)
    assert np.all(host(p) == 0)
    init.ones_(p)
    assert np.all(host(p) == 1)
    init.uniform_(p, -3, 2)
    v = host(p)
    assert v.min() >= -3 and v.max() < 2 and abs(v.mean() + 0.5) < 0.05
    init.normal_(p, mean=1.0, std=0.01)
    v = host(p)
    assert abs(v.mean() - 1) < 1e-3 and abs(v.std() - 0.01) < 1e-3
    init.xavier_uniform_(p, gain=2.0)
    bound = 2.0 * math.sqrt(6 / 700)
    v = host(p)
    assert np.abs(v).max() <= bound and np.abs(v).max() > 0.95 * bound
    init.xavier_normal_(p)
    assert abs(host(p).std() - math.sqrt(2 / 700)) < 0.05 * math.sqrt(2 / 700)
    init.kaiming_uniform_(p, a=math.sqrt(5))                  # PyTorch's Linear default: U(-1/sqrt(in), 1/sqrt(in))
    v = host(p)
    assert np.abs(v).max() <= 1 / math.sqrt(300) and np.abs(v).max() > 0.95 / math.sqrt(300)
    init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")
    assert abs(host(p).std() - math.sqrt(2 / 400)) < 0.05 * math.sqrt(2 / 400)
    init.trunc_normal_(p, mean=0.5, std=1.0, a=0.0, b=1.0)
    v = host(p)
    assert v.min() >= 0 and v.max() <= 1 and 0.45 < v.mean() < 0.55
    init.eye_(p)
    assert np.array_equal(host(p), np.eye(400, 300))


def test_bounds_equal_pytorch_formulas():
    torch = pytest.importorskip("torch")
    for fn, tfn, kwargs in [(init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, {"a": math.sqrt(5)}),
                            (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"}),
                            (init.xavier_uniform_, torch.nn.init.xavier_uniform_, {"gain": 1.5})]:
        ours, theirs = big("cpu", 50, 6, 3, 3), torch.empty(50, 6, 3, 3)
        fn(ours, **kwargs)
        tfn(theirs, **kwargs)
        assert np.abs(host(ours)).max() == pytest.approx(theirs.abs().max().item(), rel=0.03)


def test_seeded_initialization_repeats():
    tl.manual_seed(7)
    a = nn.Linear(10, 5)
    tl.manual_seed(7)
    b = nn.Linear(10, 5)
    assert np.array_equal(a.weight.array, b.weight.array) and np.array_equal(a.bias.array, b.bias.array)


def test_float64_and_float16_tensors():
    for dtype in (tl.float64, tl.float16):
        p = big("cpu", 20, 10, dtype=dtype)
        init.kaiming_uniform_(p)
        init.trunc_normal_(p, std=0.02)
        assert p.dtype == dtype and np.isfinite(host(p)).all()


# --- deferred on lazy tensors -----------------------------------------------------------------------------
def test_on_lazy_parameters_calls_are_recorded_and_replayed_in_order():
    lin = nn.LazyLinear(300)
    assert init.normal_(lin.weight, 0, 0.01) is lin.weight
    init.constant_(lin.weight, 2.0)
    init.zeros_(lin.bias)
    assert lin.weight.is_lazy and len(lin.weight._lazy.deferred) == 2
    lin(tl.rand(2, 400))
    assert np.all(lin.weight.array == 2.0) and np.all(lin.bias.array == 0)    # the later call wins
    assert not lin.weight._lazy.deferred


def test_fan_based_inits_use_the_materialized_shape():
    lin = nn.LazyLinear(200)
    init.xavier_uniform_(lin.weight)
    lin(tl.rand(1, 600))
    bound = math.sqrt(6 / 800)
    assert np.abs(lin.weight.array).max() <= bound and np.abs(lin.weight.array).max() > 0.9 * bound


def test_layer_weight_init_and_bias_init_arguments():
    eager = nn.Linear(3, 4, weight_init=init.ones_, bias_init=lambda b: init.constant_(b, 0.5))
    assert np.all(eager.weight.array == 1) and np.all(eager.bias.array == 0.5)
    lazy = nn.LazyLinear(4, weight_init=init.ones_, bias_init=init.zeros_)
    init.constant_(lazy.weight, 3.0)                       # a later recorded call runs after weight_init
    lazy(tl.rand(2, 3))
    assert np.all(lazy.weight.array == 3.0) and np.all(lazy.bias.array == 0)
    conv = nn.LazyConv2d(2, 3, weight_init=init.zeros_)
    conv(tl.rand(1, 2, 5, 5))
    assert np.all(conv.weight.array == 0)


def test_default_initialization_matches_pytorch_bounds():
    lin = nn.Linear(400, 30)
    bound = 1 / math.sqrt(400)
    for p in (lin.weight, lin.bias):
        assert np.abs(p.array).max() <= bound and np.abs(p.array).max() > 0.8 * bound
    conv = nn.Conv2d(4, 8, 3, groups=2)
    bound = 1 / math.sqrt(2 * 9)
    assert np.abs(conv.weight.array).max() <= bound and np.abs(conv.bias.array).max() <= bound
    bn, ln, emb = nn.BatchNorm1d(3), nn.LayerNorm(5), nn.Embedding(100, 50, padding_idx=0)
    assert np.all(bn.weight.array == 1) and np.all(bn.bias.array == 0) and np.all(bn.running_var.array == 1)
    assert np.all(ln.weight.array == 1) and np.all(ln.bias.array == 0)
    assert np.all(emb.weight.array[0] == 0) and 0.9 < emb.weight.array[1:].std() < 1.1
