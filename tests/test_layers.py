"""Every layer of API §5 against PyTorch's on the same parameters and inputs (float64), on every device,
plus the layer-specific lazy behaviour (conv, norm) and the losses."""
import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn

from helpers import rand

torch = pytest.importorskip("torch")


def host(x):
    return np.asarray(tl.backend.to_device(x.array, "cpu"))


def copy_from_torch(ours, theirs, device):
    """Load PyTorch's (float64) state into ours, which may be lazy: loading materializes it."""
    ours.double().load_state_dict({k: tl.tensor(v.detach().numpy(), device=device) for k, v in theirs.state_dict().items()})
    return ours


def run_both(ours, theirs, x, device, grad=True, target=None):
    xt = torch.from_numpy(x.copy()).requires_grad_(grad and x.dtype.kind == "f")
    xo = tl.tensor(x, device=device, requires_grad=grad and x.dtype.kind == "f")
    out_o = ours(xo) if target is None else ours(xo, tl.tensor(target, device=device))
    out_t = theirs(xt) if target is None else theirs(xt, torch.from_numpy(target.copy()))
    assert out_o.shape == tuple(out_t.shape)
    np.testing.assert_allclose(host(out_o), out_t.detach().numpy(), rtol=1e-9, atol=1e-12)
    if grad and x.dtype.kind == "f":
        w = rand(tuple(out_t.shape), seed=3)
        (out_o * tl.tensor(w, device=device)).sum().backward()
        (out_t * torch.from_numpy(w)).sum().backward()
        np.testing.assert_allclose(host(xo.grad), xt.grad.numpy(), rtol=1e-8, atol=1e-12)
        named = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(host(p.grad), named[name].grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)
    return out_o


@pytest.mark.parametrize("lazy", [False, True])
def test_linear(device, lazy):
    theirs = torch.nn.Linear(7, 5).double()
    ours = copy_from_torch(nn.LazyLinear(5) if lazy else nn.Linear(7, 5), theirs, device)
    assert ours.weight.dtype == tl.float64 and ours.in_features == 7
    run_both(ours, theirs, rand((4, 7)), device)
    run_both(ours, theirs, rand((2, 3, 7), seed=1), device)
    nobias = torch.nn.Linear(3, 2, bias=False).double()
    run_both(copy_from_torch(nn.Linear(3, 2, bias=False), nobias, device), nobias, rand((4, 3)), device)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2),
                                dict(groups=2, stride=(2, 1)), dict(padding="same"), dict(bias=False)])
def test_conv2d(device, kw):
    theirs = torch.nn.Conv2d(4, 6, 3, **kw).double()
    ours = copy_from_torch(nn.LazyConv2d(6, 3, **kw), theirs, device)
    assert ours.in_channels == 4
    run_both(ours, theirs, rand((2, 4, 7, 6)), device)
    run_both(ours, theirs, rand((4, 5, 5), seed=2), device)                # unbatched (C, H, W)


def test_lazy_conv_infers_channels_and_groups():
    conv = nn.LazyConv2d(6, (3, 1), groups=3)
    assert conv.weight.partial_shape == (6, None, 3, 1)
    conv(tl.rand(2, 9, 5, 5))
    assert conv.in_channels == 9 and conv.weight.shape == (6, 3, 3, 1)


@pytest.mark.parametrize("cls, shape", [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (4, 3, 5, 2))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_train_eval_and_running_stats(device, cls, shape, momentum):
    theirs = getattr(torch.nn, cls)(3, momentum=momentum).double()
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5), theirs.bias.uniform_(-1, 1)
    ours = copy_from_torch(getattr(nn, "Lazy" + cls)(momentum=momentum), theirs, device)
    assert ours.num_features == 3 and ours.num_batches_tracked.dtype == tl.int64
    for step in range(3):
        out = run_both(ours, theirs, rand(shape, seed=step), device, grad=step == 0)
    assert out.dtype == tl.float64
    np.testing.assert_allclose(host(ours.running_mean), theirs.running_mean.numpy(), rtol=1e-9)
    np.testing.assert_allclose(host(ours.running_var), theirs.running_var.numpy(), rtol=1e-9)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
    ours.eval(), theirs.eval()
    run_both(ours, theirs, rand(shape, seed=9), device)


def test_batchnorm_without_affine_or_running_stats(device):
    for kw in (dict(affine=False), dict(track_running_stats=False)):
        theirs = torch.nn.BatchNorm1d(3, **kw).double()
        ours = nn.LazyBatchNorm1d(**kw)
        run_both(ours, theirs, rand((5, 3)), device)
        assert ours.num_features == 3


@pytest.mark.parametrize("shape, normalized", [((4, 6), None), ((2, 3, 4), (3, 4)), ((2, 5), 5)])
def test_layer_norm(device, shape, normalized):
    theirs = torch.nn.LayerNorm(normalized or shape[-1]).double()
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5), theirs.bias.uniform_(-1, 1)
    ours = copy_from_torch(nn.LayerNorm(normalized) if normalized else nn.LazyLayerNorm(), theirs, device)
    run_both(ours, theirs, rand(shape), device)


def test_embedding(device):
    theirs = torch.nn.Embedding(10, 4, padding_idx=2).double()
    ours = copy_from_torch(nn.Embedding(10, 4, padding_idx=2), theirs, device)
    idx = np.array([[1, 2, 3], [9, 2, 0]])
    out_o, out_t = ours(tl.tensor(idx, device=device)), theirs(torch.from_numpy(idx))
    np.testing.assert_allclose(host(out_o), out_t.detach().numpy())
    out_o.sum().backward(), out_t.sum().backward()
    np.testing.assert_allclose(host(ours.weight.grad), theirs.weight.grad.numpy())
    assert np.all(nn.Embedding(5, 3, padding_idx=-1).weight.array[4] == 0)


@pytest.mark.parametrize("ours, theirs", [
    (lambda: nn.ReLU(), lambda: torch.nn.ReLU()), (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")), (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
    (lambda: nn.Tanh(), lambda: torch.nn.Tanh()), (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
    (lambda: nn.LogSoftmax(dim=-1), lambda: torch.nn.LogSoftmax(dim=-1)), (lambda: nn.Identity(), lambda: torch.nn.Identity()),
    (lambda: nn.Flatten(), lambda: torch.nn.Flatten()), (lambda: nn.Flatten(0, 1), lambda: torch.nn.Flatten(0, 1)),
    (lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
    (lambda: nn.MaxPool2d(3, stride=1, padding=1), lambda: torch.nn.MaxPool2d(3, stride=1, padding=1)),
    (lambda: nn.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2)),
    (lambda: nn.AdaptiveAvgPool2d(1), lambda: torch.nn.AdaptiveAvgPool2d(1)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: torch.nn.AdaptiveAvgPool2d((2, 3))),
])
def test_parameterless_layers(device, ours, theirs):
    run_both(ours(), theirs(), rand((2, 3, 4, 6)), device)


def test_dropout_train_and_eval(device):
    drop = nn.Dropout(0.5)
    x = tl.ones(1000, 10, device=device)
    y = host(drop(x))
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    drop.eval()
    assert np.array_equal(host(drop(x)), host(x))
    assert np.array_equal(host(nn.Dropout(0.0)(x)), host(x))
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses(device, reduction):
    logits, labels = rand((6, 4)), np.array([0, 3, 1, 1, 2, 0])
    run_both(nn.CrossEntropyLoss(reduction=reduction), torch.nn.CrossEntropyLoss(reduction=reduction),
             logits, device, target=labels)
    run_both(nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1),
             torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1), logits, device, target=labels)
    run_both(nn.NLLLoss(reduction=reduction), torch.nn.NLLLoss(reduction=reduction), logits, device, target=labels)
    run_both(nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), logits, device,
             target=rand((6, 4), seed=5))
    run_both(nn.BCEWithLogitsLoss(reduction=reduction), torch.nn.BCEWithLogitsLoss(reduction=reduction), logits,
             device, target=(rand((6, 4), seed=6) > 0).astype(np.float64))
    with pytest.raises(ValueError):
        nn.MSELoss(reduction="avg")


def test_lenet_from_lazy_layers_trains_a_step(device):
    net = nn.Sequential(nn.LazyConv2d(6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, stride=2),
                        nn.LazyConv2d(16, 5), nn.Sigmoid(), nn.AvgPool2d(2, stride=2), nn.Flatten(),
                        nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(), nn.LazyLinear(10))
    X, y = tl.rand(4, 1, 28, 28, device=device), tl.tensor([0, 1, 2, 3], device=device)
    loss = nn.CrossEntropyLoss()(net(X), y)
    loss.backward()
    assert [m.in_features for m in net if type(m) is nn.Linear] == [400, 120, 84]
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    assert net.num_parameters() == 61706                                    # d2l's LeNet count


def test_layer_constructor_validation():
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, -1)
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(2.5, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(1, 2, (1, 2, 3))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(3, 2, padding_idx=3)
