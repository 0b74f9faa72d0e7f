"""`.data` is a Tensor (issue 15, item 1), in-place init through `.data` on a lazy parameter is deferred
(item 2), and what a lazy parameter answers (item 6). Checked against PyTorch where PyTorch defines it."""
import copy

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn
from tinylazy.nn.parameter import LazyData

from helpers import torch


def _twins(shape=(3, 4)):
    """A tinylazy Parameter and a torch Parameter holding the same float32 values."""
    th = torch()
    values = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    return nn.Parameter(tl.tensor(values.copy())), th.nn.Parameter(th.from_numpy(values.copy()))


# --- item 1: .data is a detached Tensor sharing storage -----------------------------------------------
def test_data_of_a_parameter_is_a_plain_detached_tensor_like_torch():
    p, q = _twins()
    d, e = p.data, q.data
    assert type(d) is tl.Tensor and type(e) is torch().Tensor                 # not a Parameter
    assert (d.requires_grad, d.is_leaf, d.grad_fn) == (e.requires_grad, e.is_leaf, e.grad_fn) == (False, True, None)
    assert d.grad is None and e.grad is None
    assert np.shares_memory(d.array, p.array)                                 # the same storage
    assert d.shape == p.shape and d.dtype == p.dtype


def test_data_answers_like_a_tensor_on_parameters_and_buffers(device):
    lin = nn.Linear(3, 2).to(device)
    bn = nn.BatchNorm1d(3).to(device)
    assert isinstance(lin.weight.data.device, tl.Device) and lin.weight.data.device == device
    assert isinstance(bn.running_mean.data.device, tl.Device) and bn.running_mean.data.device == device
    np.testing.assert_array_equal(lin.weight.data.abs().numpy(), np.abs(lin.weight.detach().numpy()))
    np.testing.assert_array_equal(bn.running_var.data.numpy(), np.ones(3, np.float32))
    assert bn.num_batches_tracked.data.dtype == tl.int64
    assert isinstance(lin.weight.array, type(lin.weight.data.array))             # .array: the raw backend array


def test_data_of_a_lazy_model_after_the_first_forward():
    net = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d())
    net(tl.rand(5, 3))
    assert net[0].weight.data.shape == (4, 3) and net[1].running_mean.data.device == "cpu"
    assert type(net[0].weight.data) is tl.Tensor and not net[0].weight.data.requires_grad


def test_data_of_a_non_leaf_is_detached():
    x = tl.rand(3, requires_grad=True)
    y = x * 2
    assert y.data.grad_fn is None and not y.data.requires_grad
    assert np.shares_memory(y.data.array, y.array)


def test_inplace_through_data_changes_the_parameter_and_is_not_recorded_like_torch():
    th = torch()
    p, q = _twins()
    for t in (p.data, q.data):                    # under grad mode: allowed, and not part of any graph
        t *= 2
        t += 1
        t[0, 0] = 7
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    assert p.is_leaf and p.grad_fn is None and p.requires_grad
    (p * p).sum().backward()
    (q * q).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy())                  # the gradient of the new values
    for name, args in (("fill_", (3.0,)), ("zero_", ()), ("copy_", None)):
        p, q = _twins()
        if args is None:                                                        # copy_ from a tensor
            src = np.arange(12, dtype=np.float32).reshape(3, 4)
            p.data.copy_(tl.tensor(src))
            q.data.copy_(th.from_numpy(src))
        else:
            getattr(p.data, name)(*args)
            getattr(q.data, name)(*args)
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
        assert p.grad_fn is None and p.requires_grad


def test_d2l_custom_init_through_data_matches_torch():
    # d2l 6.3: `m.weight.data *= m.weight.data.abs() >= 5`, `weight.data[:] += 1`, `weight.data[0, 0] = 42`
    values = np.random.default_rng(1).uniform(-10, 10, size=(8, 4)).astype(np.float32)
    p, q = nn.Parameter(tl.tensor(values.copy())), torch().nn.Parameter(torch().from_numpy(values.copy()))
    for w in (p, q):
        w.data *= w.data.abs() >= 5
        w.data[:] += 1
        w.data[0, 0] = 42
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    assert p.detach().numpy()[0, 0] == 42


def test_assigning_data_replaces_values_shape_and_dtype_like_torch():
    th = torch()
    p, q = _twins()
    p.data = tl.ones(2, 5, dtype=tl.float64)
    q.data = th.ones(2, 5, dtype=th.float64)
    assert type(p) is nn.Parameter and p.requires_grad and p.is_leaf
    assert p.shape == tuple(q.shape) == (2, 5) and p.dtype == tl.float64 and q.dtype == th.float64
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    p.data = np.zeros((3,), np.float32)               # tinylazy also takes a raw NumPy/CuPy array (API §2)
    assert p.shape == (3,) and float(p.sum()) == 0


def test_assigning_bad_data_raises_like_torch():
    th = torch()
    p, q = _twins()
    with pytest.raises(TypeError, match="Tensor.data: expected a Tensor or a NumPy/CuPy array, got list"):
        p.data = [1.0, 2.0]
    with pytest.raises(TypeError):
        q.data = [1.0, 2.0]
    with pytest.raises(RuntimeError, match="requires grad.*floating point, got int64"):
        p.data = tl.ones(2, dtype=tl.int64)
    with pytest.raises(RuntimeError):
        q.data = th.ones(2, dtype=th.int64)
    assert p.shape == (3, 4) and p.dtype == tl.float32                         # unchanged by the failures
    t = tl.zeros(2)                                   # no grad: any dtype goes, as in torch
    t.data = tl.ones(3, dtype=tl.int64)
    assert t.dtype == tl.int64 and t.tolist() == [1, 1, 1]


# --- item 2: in-place init through .data on a lazy parameter is deferred ------------------------------
class LinearRegression(nn.Module):
    """d2l 3.5's model, as the book writes it (PyTorch loses this init at materialization; tinylazy keeps it)."""

    def __init__(self, lr):
        super().__init__()
        self.lr = lr
        self.net = nn.LazyLinear(1)
        self.net.weight.data.normal_(0, 0.01)
        self.net.bias.data.fill_(0)

    def forward(self, X):
        return self.net(X)


def test_d2l_linear_regression_init_is_kept_and_equals_a_manual_init():
    X = tl.rand(4, 2)
    tl.manual_seed(7)
    model = LinearRegression(0.03)
    assert model.net.weight.is_lazy
    model(X)
    tl.manual_seed(7)
    ref = nn.Linear(2, 1)                             # the same draws: default init, then the user's
    ref.weight.data.normal_(0, 0.01)
    ref.bias.data.fill_(0)
    np.testing.assert_array_equal(model.net.weight.detach().numpy(), ref.weight.detach().numpy())
    assert model.net.bias.tolist() == [0.0]
    assert 0 < float(model.net.weight.abs().max()) < 0.05                     # N(0, 0.01), not the default


@pytest.mark.parametrize("call, check", [
    (lambda d: d.fill_(3.0), lambda a: np.all(a == 3)),
    (lambda d: d.zero_(), lambda a: np.all(a == 0)),
    (lambda d: d.uniform_(5, 6), lambda a: np.all((a >= 5) & (a < 6))),
    (lambda d: d.normal_(100, 0.01), lambda a: np.all(np.abs(a - 100) < 1)),
])
def test_each_deferred_inplace_init(call, check):
    net = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyBatchNorm1d())
    for p in (net[0].weight, net[0].bias, net[2].weight, net[2].running_var):
        assert call(p.data) is not None
    net.eval()(tl.rand(4, 2))                             # eval: the forward leaves running_var as initialized
    for p in (net[0].weight, net[0].bias, net[2].weight, net[2].running_var):
        assert check(p.detach().numpy())
        assert not p._lazy.deferred                 # replayed once, then forgotten


def test_deferred_data_inits_keep_their_order_with_nn_init():
    a, b = nn.LazyLinear(2), nn.LazyLinear(2)
    nn.init.constant_(a.weight, 3.0)
    a.weight.data.fill_(1.0)
    b.weight.data.fill_(1.0)
    nn.init.constant_(b.weight, 3.0)
    a(tl.rand(1, 4))
    b(tl.rand(1, 4))
    assert np.all(a.weight.detach().numpy() == 1) and np.all(b.weight.detach().numpy() == 3)


def test_deferred_data_init_survives_a_failed_first_call_and_copies():
    net = nn.Sequential(nn.LazyLinear(3), nn.LazyBatchNorm2d())
    net[0].weight.data.fill_(2.0)
    with pytest.raises(tl.ShapeError):
        net(tl.rand(2, 4))                                # Linear materializes, BatchNorm2d rejects a 2-D input
    assert net[0].weight.is_lazy                          # rolled back, the recorded init kept
    twin = copy.deepcopy(net)
    net.materialize((1, 1, 1, 4))                         # the shape-only path applies it too
    twin(tl.rand(2, 1, 1, 6))
    assert np.all(net[0].weight.detach().numpy() == 2) and net[0].weight.shape == (3, 4)
    assert np.all(twin[0].weight.detach().numpy() == 2) and twin[0].weight.shape == (3, 6)


def test_load_state_dict_wins_over_deferred_data_inits():
    src = nn.Linear(4, 3)
    dst = nn.LazyLinear(3)
    dst.weight.data.fill_(9.0)
    dst.load_state_dict(src.state_dict())
    np.testing.assert_array_equal(dst.weight.detach().numpy(), src.weight.detach().numpy())
    assert not dst.weight._lazy.deferred


def test_lazy_data_copy_and_other_uses_raise_clearly():
    lin = nn.LazyLinear(3)
    d = lin.weight.data
    assert isinstance(d, LazyData) and d.is_lazy and d.dtype is None and d.device is None
    assert repr(d) == "<lazy data of Parameter(shape=(3, ?), lazy): 0 init(s) recorded for materialization>"
    d.normal_()
    assert "1 init(s) recorded" in repr(lin.weight.data)
    with pytest.raises(nn.UninitializedParameterError, match=r"copy_ through \.data: parameter 'weight' is "
                                                             r"uninitialized.*copy after materializing"):
        d.copy_(tl.ones(3, 5))
    for use in (lambda: d.shape, lambda: d.abs(), lambda: d.mul_(2), lambda: np.asarray(d)):
        with pytest.raises(nn.UninitializedParameterError, match="only records the in-place inits"):
            use()
    assert not hasattr(d, "_repr_html_") and copy.copy(d).owner is lin.weight      # protocol probes answer as usual
    lin(tl.rand(2, 5))
    assert type(lin.weight.data) is tl.Tensor and lin.weight.data.shape == (3, 5)
    lin.weight.data.copy_(tl.ones(3, 5))                  # once materialized, copy_ works
    assert np.all(lin.weight.detach().numpy() == 1)


# --- item 6: what a lazy parameter answers ----------------------------------------------------------------
def test_lazy_dtype_and_device_are_none_until_known():
    lin, bn = nn.LazyLinear(3), nn.LazyBatchNorm1d()
    w = lin.weight
    assert hasattr(w, "dtype") and hasattr(w, "device")
    assert w.dtype is None and w.device is None
    assert bn.num_batches_tracked.dtype == tl.int64 and bn.num_batches_tracked.device is None   # fixed dtype
    lin.to(tl.float64)
    assert w.dtype == tl.float64 and w.device is None and w.is_lazy
    lin.to("cpu")
    assert w.device == "cpu" and isinstance(w.device, tl.Device)
    lin(tl.rand(2, 4, dtype=tl.float64))
    assert w.dtype == tl.float64 and w.device == "cpu"


@pytest.mark.parametrize("use", [lambda p: p.numpy(), lambda p: p.shape, lambda p: p + 1, lambda p: 2.0 * p,
                                 lambda p: p > 0, lambda p: p.exp(), lambda p: p.float(),
                                 lambda p: p.to(tl.float64), lambda p: p.softmax(0), lambda p: p.tolist(),
                                 lambda p: tl.where(tl.ones(3) > 0, p, 0.0), lambda p: p.detach()])
def test_values_shape_numpy_and_arithmetic_of_a_lazy_parameter_raise(use):
    lin = nn.LazyLinear(3)
    with pytest.raises(nn.UninitializedParameterError, match="'weight' is uninitialized"):
        use(lin.weight)


def test_helpers_that_read_dtype_or_device_still_work_on_a_lazy_model(tmp_path):
    net = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d(), nn.LazyLinear(2))
    assert "Linear" in str(net.summary((2, 3))) and net.has_uninitialized_params()
    sd = net.state_dict()
    assert nn.is_lazy(sd["0.weight"])
    with pytest.raises(Exception, match="(?i)uninitialized|lazy"):
        tl.save(sd, tmp_path / "lazy.tl")
    net.to(tl.float64)
    out = net(tl.rand(5, 3, dtype=tl.float64))
    assert out.dtype == tl.float64 and all(p.dtype == tl.float64 for p in net.parameters())
