"""Lazy rules 7-12 of API §6 (loading, state dicts, copies, sharing, materialize, helpers) and the lazy
extras of nn.Module (materialize, summary, apply_init). Rules 1-6 are in test_lazy.py."""
import copy
import importlib
import pickle
import tracemalloc

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn
from tinylazy.meta import MetaArray


def mlp(out=10):
    return nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(out))


def lazy_names(model):
    return [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if nn.is_lazy(p)]


# --- rule 7: load_state_dict materializes ------------------------------------------------------------------
def test_rule7_load_state_dict_materializes_and_keeps_values():
    src = mlp()
    X = tl.rand(3, 20)
    Y = src(X)
    dst = mlp()
    ids = [id(p) for p in dst.parameters()]
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert [id(p) for p in dst.parameters()] == ids
    assert dst[0].in_features == 20 and repr(dst[0]).startswith("Linear(in_features=20")
    for (n, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert np.array_equal(a.array, b.array), n
        assert a.array is not b.array
    assert np.array_equal(dst(X).array, Y.array)


def test_rule7_load_into_lazy_conv_and_batchnorm():
    def make():
        return nn.Sequential(nn.LazyConv2d(4, 3, groups=2), nn.LazyBatchNorm2d(momentum=None), nn.ReLU())
    src = make()
    X = tl.rand(2, 6, 5, 5)
    src(X), src(X)
    dst = make()
    dst.load_state_dict(src.state_dict())
    assert dst[0].in_channels == 6 and dst[1].num_features == 4
    assert int(dst[1].num_batches_tracked) == 2 and dst[1].num_batches_tracked.dtype == tl.int64
    src.eval(), dst.eval()
    assert np.allclose(dst(X).array, src(X).array)


def test_rule7_load_with_wrong_shapes_fails_without_changing_the_model():
    src = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 7))
    dst = mlp(10)
    with pytest.raises(RuntimeError) as info:
        dst.load_state_dict(src.state_dict())
    assert "2.weight" in str(info.value) and "(7, 256)" in str(info.value)
    assert lazy_names(dst) == ["0.weight", "0.bias", "2.weight", "2.bias"]     # checked before changing
    assert dst[0].in_features is None


def test_rule7_load_uses_checkpoint_dtype_unless_placed():
    src = mlp().double()
    src(tl.rand(1, 20, dtype=tl.float64))
    dst = mlp()
    dst.load_state_dict(src.state_dict())
    assert dst[0].weight.dtype == tl.float64
    dst = mlp().float()
    dst.load_state_dict(src.state_dict())
    assert dst[0].weight.dtype == tl.float32
    assert np.allclose(dst[0].weight.array, src[0].weight.array)


# --- rule 8: lazy state dicts ------------------------------------------------------------------------------
def test_rule8_lazy_state_dict_holds_lazy_parameters():
    net = mlp()
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert sd["0.weight"] is net[0].weight and nn.is_lazy(sd["0.weight"])
    other = mlp()
    other.load_state_dict(sd)                            # lazy into lazy: fine, stays lazy
    assert other.has_uninitialized_params()


def test_rule8_loading_lazy_state_into_materialized_model_raises():
    lazy_sd = mlp().state_dict()
    net = mlp()
    net(tl.rand(1, 20))
    with pytest.raises(RuntimeError, match="uninitialized"):
        net.load_state_dict(lazy_sd)


def test_rule8_saving_a_lazy_parameter_raises(tmp_path):
    save = getattr(tl, "save", None) or getattr(importlib.import_module("tinylazy.serialization"), "save", None)
    if save is None:
        pytest.skip("tl.save is not written yet")
    with pytest.raises(Exception, match="(?i)lazy|uninitialized") as info:
        save(mlp().state_dict(), str(tmp_path / "lazy.tl"))
    assert "0.weight" in str(info.value)
    assert not (tmp_path / "lazy.tl").exists()


def test_a_materialized_model_round_trips_through_save_and_load(tmp_path):
    serialization = importlib.import_module("tinylazy.serialization")
    net = mlp()
    X = tl.rand(2, 20)
    Y = net(X)
    serialization.save(net.state_dict(), str(tmp_path / "mlp.tl"))
    clone = mlp()
    clone.load_state_dict(serialization.load(str(tmp_path / "mlp.tl")))
    assert np.array_equal(clone(X).array, Y.array)


# --- rule 9: deepcopy and pickle ---------------------------------------------------------------------------
@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_rule9_copies_of_lazy_models_materialize_independently(clone):
    net = mlp()
    nn.init.constant_(net[2].bias, 0.5)                          # a deferred init travels with the copy
    twin = clone(net)
    assert twin[0].weight is not net[0].weight and twin[0].weight.is_lazy
    twin(tl.rand(2, 20))
    assert net.has_uninitialized_params() and net[0].in_features is None
    assert np.all(twin[2].bias.array == 0.5)
    net(tl.rand(2, 5))
    assert net[0].in_features == 5 and twin[0].in_features == 20
    third = clone(twin)                                         # a materialized model copies its values
    assert np.array_equal(third[0].weight.array, twin[0].weight.array)
    assert third[0].weight.array is not twin[0].weight.array
    X = tl.rand(4, 20)
    assert np.array_equal(third(X).array, twin(X).array)


def test_rule9_copies_keep_sharing_inside_the_model():
    shared = nn.LazyLinear(8)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    twin = copy.deepcopy(net)
    assert twin[0] is twin[2] and twin[0] is not shared
    twin(tl.rand(2, 8))
    assert twin[0].weight is twin[2].weight


# --- rule 10: a module used twice shares its parameters ----------------------------------------------------
def test_rule10_shared_module_parameters_once_and_gradients_accumulate():
    shared = nn.LazyLinear(8)
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.LazyLinear(1))
    X = tl.rand(2, 4)
    net(X).sum().backward()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "6.weight", "6.bias"]
    assert len(list(net.parameters())) == 6 and net[2].weight is net[4].weight
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias",
                                      "6.weight", "6.bias"]               # as PyTorch: every name
    # the same network with two separate copies of the shared layer: the shared gradient is their sum
    untied = copy.deepcopy(net)
    untied[4] = copy.deepcopy(untied[2])
    untied.zero_grad()
    untied(X).sum().backward()
    assert untied[2].weight is not untied[4].weight
    expected = untied[2].weight.grad.array + untied[4].weight.grad.array
    assert np.allclose(net[2].weight.grad.array, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(net[2].weight.grad.array, untied[2].weight.grad.array)


# --- rule 11: materialize ------------------------------------------------------------------------------------
@pytest.mark.parametrize("example", [(2, 20), tl.empty(2, 20, device="meta"), tl.rand(2, 20)])
def test_rule11_materialize_from_shapes_meta_or_real(example):
    net = mlp()
    assert net.materialize(example) is net
    assert not net.has_uninitialized_params()
    assert net[0].weight.shape == (256, 20) and net[0].weight.dtype == tl.float32
    assert net[0].weight.device == "cpu" and isinstance(net[0].weight.array, np.ndarray)
    assert np.abs(net[0].weight.array).max() > 0                 # initialized, not empty memory


def test_rule11_materialize_device_and_dtype(device):
    net = mlp().materialize((2, 20), device=device, dtype=tl.float64)
    assert all(p.device == device and p.dtype == tl.float64 for p in net.parameters())
    assert net(tl.rand(3, 20, dtype=tl.float64, device=device)).shape == (3, 10)


def test_rule11_materialize_computes_no_activations(monkeypatch):
    linear_ops = importlib.import_module("tinylazy.ops.linear")
    seen = []
    real = linear_ops.Linear.forward
    monkeypatch.setattr(linear_ops.Linear, "forward",
                        lambda self, x, w, b, **kw: seen.append(type(x)) or real(self, x, w, b, **kw))
    net = nn.Sequential(nn.LazyLinear(512), nn.ReLU(), nn.LazyLinear(512), nn.ReLU(), nn.LazyLinear(10))
    outs = []
    net.register_forward_hook(lambda m, a, out: outs.append(out))
    tracemalloc.start()
    try:
        net.materialize((200_000, 1_000))                  # real activations would take ~800 MB each
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    params = sum(p.array.nbytes for p in net.parameters())
    assert peak < params + 8 * 2**20, (peak, params)
    assert seen and all(t is MetaArray for t in seen)            # every matmul ran on shapes only
    assert isinstance(outs[0].array, MetaArray) and outs[0].shape == (200_000, 10)


def test_rule11_materialize_rolls_back_on_failure_and_keeps_real_parameters():
    net = nn.Sequential(nn.Linear(3, 8), nn.LazyLinear(4), nn.Linear(5, 2))
    before = net[0].weight.array
    with pytest.raises(nn.ShapeError):
        net.materialize((2, 3))
    assert net[0].weight.array is before and lazy_names(net) == ["1.weight", "1.bias"]
    net = nn.Sequential(nn.Linear(3, 8), nn.LazyLinear(4))
    net.materialize((2, 3))
    assert net[0].weight.array is before or isinstance(net[0].weight.array, np.ndarray)
    assert net(tl.rand(2, 3)).shape == (2, 4)


def test_rule11_materialize_applies_deferred_inits_and_batchnorm_stats():
    net = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d())
    net.apply(lambda m: nn.init.constant_(m.weight, 3.0) if type(m) is nn.Linear else None)
    net.materialize((2, 6))
    assert np.all(net[0].weight.array == 3.0)
    assert np.all(net[1].running_var.array == 1) and int(net[1].num_batches_tracked) == 0


# --- rule 12: helpers that need values ------------------------------------------------------------------------
def test_rule12_counting_parameters_of_a_lazy_model_gives_the_hint():
    net = mlp()
    with pytest.raises(nn.UninitializedParameterError, match="run one forward on an example first"):
        net.num_parameters()
    with pytest.raises(nn.UninitializedParameterError, match="run one forward on an example first"):
        sum(p.numel() for p in net.parameters())
    net(tl.rand(1, 20))
    assert net.num_parameters() == 20 * 256 + 256 + 256 * 10 + 10


def test_rule12_lazy_parameters_can_be_collected_and_grad_flags_set():
    net = mlp()
    params = list(net.parameters())
    assert all(p.is_lazy for p in params)
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in params)
    net(tl.rand(1, 3))
    assert not any(p.requires_grad for p in params)


# --- the rest of the machinery -----------------------------------------------------------------------------
def test_apply_init_dry_run_then_init_without_side_effects():
    net = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d(), nn.Dropout(0.5))
    net.apply_init([tl.rand(8, 3)], lambda m: nn.init.zeros_(m.bias) if type(m) is nn.Linear else None)
    assert net.training and all(m.training for m in net.modules())
    assert int(net[1].num_batches_tracked) == 0 and np.all(net[1].running_mean.array == 0)
    assert np.all(net[0].bias.array == 0) and net[0].weight.shape == (4, 3)


def test_summary_on_lazy_model_leaves_it_lazy():
    net = nn.Sequential(nn.LazyConv2d(6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.LazyLinear(10))
    s = net.summary((1, 1, 28, 28))
    text = str(s)
    assert net.has_uninitialized_params()
    assert s.total_params == 6 * 25 + 6 + 6 * 14 * 14 * 10 + 10
    assert "[1, 6, 28, 28]" in text and "[1, 10]" in text and "Conv2d" in text and "11,770" in text
    assert s.rows[0][:4] == ("0", "Conv2d", "[1, 6, 28, 28]", 156)
    assert s.total_bytes == 4 * s.total_params
    net(tl.rand(1, 1, 28, 28))
    assert net.summary(tl.rand(2, 1, 28, 28)).total_params == s.total_params


def test_plain_call_on_meta_input_gives_meta_parameters():
    net = mlp()
    out = net(tl.empty(2, 20, device="meta"))
    assert out.is_meta and out.shape == (2, 10)
    assert net[0].weight.device == "meta" and net[0].weight.shape == (256, 20)


def test_failed_call_keeps_deferred_inits_for_the_next_one():
    net = nn.Sequential(nn.LazyLinear(3), nn.Linear(2, 1))
    nn.init.ones_(net[0].weight)
    with pytest.raises(nn.ShapeError):
        net(tl.rand(1, 4))
    net[1] = nn.LazyLinear(1)
    net(tl.rand(1, 4))
    assert np.all(net[0].weight.array == 1)


def test_materialize_dtype_rules():
    net = mlp().double()                                     # an explicit placement, then shape tuples
    net.materialize((3, 20))
    assert net[0].weight.dtype == tl.float64
    net = mlp()
    net.materialize(tl.rand(3, 20, dtype=tl.float64))        # the trace follows the example; params: float32
    assert net[0].weight.dtype == tl.float32
    net = mlp().double()
    net.materialize((3, 20), dtype=tl.float32)               # materialize(dtype=) is the latest explicit word
    assert net[0].weight.dtype == tl.float32


def test_raw_arrays_are_inputs_too():
    net = mlp()
    out = net(np.ones((2, 3), np.float32))
    assert out.shape == (2, 10) and net[0].in_features == 3
    with pytest.raises(nn.ShapeError):
        net(np.ones((2, 4), np.float32))


def test_module_path_follows_nesting_in_messages():
    inner = nn.LazyLinear(3)
    assert nn.Sequential(nn.Sequential(nn.Identity(), inner)) is not None
    inner(tl.rand(1, 4))
    with pytest.raises(nn.ShapeError, match=r"Linear '0\.1'"):
        inner(tl.rand(1, 5))
