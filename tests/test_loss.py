"""Losses: cross_entropy, nll_loss, mse_loss, binary_cross_entropy_with_logits and one_hot equal PyTorch's
(forward and gradients) for every reduction, label smoothing, weights and ignore_index, on edge shapes;
float64 gradchecks; clear errors; meta tensors."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy.meta import MetaArray
from helpers import check_op, host, noncontiguous, rand, torch

th = torch()
TF = th.nn.functional

REDUCTIONS = ["mean", "sum", "none"]
SMOOTHING = [0.0, 0.1, 1.0]
# (logits shape, number of classes): (N, C), (C,) with a 0-d target, (N, C, d1, ...), batch 1
CLASS_SHAPES = [((4, 5), 5), ((5,), 5), ((3, 4, 2), 4), ((2, 3, 2, 2), 3), ((1, 5), 5), ((1, 1), 1)]


def targets(x_shape, C, seed=0, ignore=False):
    shape = () if len(x_shape) == 1 else x_shape[:1] + x_shape[2:]
    rng = np.random.default_rng(seed)
    t = rng.integers(0, C, shape)
    if ignore:
        t = np.where(rng.random(shape) < 0.35, -100, t)
        if t.size:
            t.reshape(-1)[0] = -100                        # at least one ignored
    return np.asarray(t, np.int64)


def class_weight(C, device, seed=7):
    w = rand((C,), seed=seed, low=0.2, high=2.0)
    return w, tl.tensor(w, device=device), th.tensor(w)


def ce_pair(device, weight=None, **kw):
    w_tl = None if weight is None else tl.tensor(weight, device=device)
    w_th = None if weight is None else th.tensor(weight)
    return (lambda x, t: F.cross_entropy(x, t, weight=w_tl, **kw),
            lambda x, t: TF.cross_entropy(x, t, weight=w_th, **kw))


# --- cross_entropy -------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", SMOOTHING)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all", "ignore"])
@pytest.mark.parametrize("x_shape,C", CLASS_SHAPES, ids=str)
def test_cross_entropy_matches_torch(device, reduction, smoothing, weighted, ignore, x_shape, C):
    x = rand(x_shape, seed=1, low=-3, high=3)
    t = targets(x_shape, C, seed=2, ignore=ignore and len(x_shape) > 1)
    weight = rand((C,), seed=3, low=0.2, high=2.0) if weighted else None
    ours, theirs = ce_pair(device, weight, reduction=reduction, label_smoothing=smoothing)
    check_op(ours, theirs, x, t, device=device)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_empty_batch_and_all_ignored(device, reduction, smoothing):
    ours, theirs = ce_pair(device, reduction=reduction, label_smoothing=smoothing)
    check_op(ours, theirs, rand((0, 4), seed=4), np.zeros(0, np.int64), device=device, gradcheck=False)
    check_op(ours, theirs, rand((3, 4), seed=5), np.full(3, -100), device=device, gradcheck=False)


def test_cross_entropy_custom_ignore_index_inside_class_range(device):
    x, t = rand((6, 4), seed=6), np.array([0, 2, 2, 1, 3, 2])
    for smoothing in (0.0, 0.3):
        ours, theirs = ce_pair(device, rand((4,), seed=7, low=0.5), ignore_index=2, label_smoothing=smoothing)
        check_op(ours, theirs, x, t, device=device)


def test_cross_entropy_noncontiguous_large_logits_and_float32(device):
    x = noncontiguous(rand((5, 7), seed=8) * 500)           # stable: no overflow in exp
    t = targets((5, 7), 7, seed=9)
    out = check_op(*ce_pair(device, label_smoothing=0.1), x, t, device=device)
    assert np.isfinite(host(out))
    x32, t32 = rand((256, 10), np.float32, seed=10, low=-4, high=4), targets((256, 10), 10, seed=11)
    for kw in ({}, {"label_smoothing": 0.1}, {"reduction": "none"}):
        out = check_op(*ce_pair(device, **kw), x32, t32, device=device, rtol=1e-5, atol=1e-6)
        assert out.dtype == tl.float32


def test_cross_entropy_int32_targets_and_legacy_reduction_arguments(device):
    x, t = rand((4, 3), seed=12), targets((4, 3), 3, seed=13)
    check_op(lambda a, b: F.cross_entropy(a, b), lambda a, b: TF.cross_entropy(a, b.long()), x,
             t.astype(np.int32), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for legacy in ({"size_average": False}, {"reduce": False}):
            check_op(lambda a, b: F.cross_entropy(a, b, **legacy), lambda a, b: TF.cross_entropy(a, b, **legacy),
                     x, t, device=device)


def test_cross_entropy_is_one_graph_node():
    x = tl.tensor(rand((4, 3), seed=14), requires_grad=True)
    loss = F.cross_entropy(x, tl.tensor([0, 1, 2, 0]))
    assert type(loss.grad_fn).__name__ == "CrossEntropy"
    assert [t for _, t in loss.grad_fn._edges] == [x]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 4), c=st.integers(1, 4), extra=st.lists(st.integers(0, 3), max_size=2),
       reduction=st.sampled_from(REDUCTIONS), smoothing=st.sampled_from([0.0, 0.25]), ignore=st.booleans())
def test_cross_entropy_shapes_hypothesis(n, c, extra, reduction, smoothing, ignore):
    x_shape = (n, c) + tuple(extra)
    t = targets(x_shape, c, seed=n + c, ignore=ignore)
    ours, theirs = ce_pair("cpu", reduction=reduction, label_smoothing=smoothing)
    check_op(ours, theirs, rand(x_shape, seed=c), t, gradcheck=False)


# --- nll_loss ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all", "ignore"])
@pytest.mark.parametrize("x_shape,C", CLASS_SHAPES, ids=str)
def test_nll_loss_matches_torch(device, reduction, weighted, ignore, x_shape, C):
    x = rand(x_shape, seed=15, low=-3, high=0)
    t = targets(x_shape, C, seed=16, ignore=ignore and len(x_shape) > 1)
    w = rand((C,), seed=17, low=0.2, high=2.0) if weighted else None
    w_tl, w_th = (None, None) if w is None else (tl.tensor(w, device=device), th.tensor(w))
    check_op(lambda a, b: F.nll_loss(a, b, weight=w_tl, reduction=reduction),
             lambda a, b: TF.nll_loss(a, b, weight=w_th, reduction=reduction), x, t, device=device)


def test_nll_of_log_softmax_equals_cross_entropy(device):
    x, t = rand((6, 5), seed=18), targets((6, 5), 5, seed=19)
    check_op(lambda a, b: F.nll_loss(F.log_softmax(a, 1), b), lambda a, b: TF.cross_entropy(a, b), x, t,
             device=device)


# --- class-loss errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss], ids=["cross_entropy", "nll_loss"])
def test_class_loss_errors(loss):
    name = loss.__name__
    x = tl.randn(4, 3)
    with pytest.raises(TypeError, match=f"{name}: expected integer class indices.*float32.*argmax"):
        loss(x, tl.zeros(4))
    with pytest.raises(IndexError, match=f"{name}: target class 3 is out of range for 3 classes"):
        loss(x, tl.tensor([0, 1, 3, 2]))
    with pytest.raises(IndexError, match="target class -1 is out of range"):
        loss(x, tl.tensor([0, -1, 1, 2]))
    with pytest.raises(tl.ShapeError, match=r"batch size \(4\) to match target batch size \(5\).*"
                                            r"\(4, 3\).*\(5,\)"):
        loss(x, tl.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(tl.ShapeError, match=r"expected target of shape \(4,\).*got target shape \(4, 2\)"):
        loss(x, tl.zeros(4, 2, dtype=tl.int64))
    with pytest.raises(TypeError, match=r"input is int64.*convert it with \.float\(\)"):
        loss(tl.tensor([[1, 2, 3]]), tl.tensor([0]))
    with pytest.raises(ValueError, match="reduction must be"):
        loss(x, tl.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(tl.ShapeError, match=r"weight of shape \(3,\)"):
        loss(x, tl.tensor([0, 1, 2, 0]), weight=tl.ones(4))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64])
def test_class_index_check_for_every_integer_dtype(dtype):
    # the range check views signed targets as unsigned (one pass): a negative index must still be refused
    x = tl.tensor(np.random.default_rng(3).standard_normal((4, 3)))
    want = F.cross_entropy(x, tl.tensor(np.array([0, 2, 1, 2]))).item()
    assert F.cross_entropy(x, tl.tensor(np.array([0, 2, 1, 2], dtype))).item() == want
    with pytest.raises(IndexError, match="target class 3 is out of range for 3 classes"):
        F.cross_entropy(x, tl.tensor(np.array([0, 3, 1, 2], dtype)))
    if np.dtype(dtype).kind == "i":
        with pytest.raises(IndexError, match="target class -1 is out of range"):
            F.cross_entropy(x, tl.tensor(np.array([0, -1, 1, 2], dtype)))
        ignored = F.cross_entropy(x, tl.tensor(np.array([0, -100, 1, 2], dtype))).item()   # the default ignore_index
        assert ignored == pytest.approx(F.cross_entropy(x[[0, 2, 3]], tl.tensor(np.array([0, 1, 2]))).item())
    inside = F.cross_entropy(x, tl.tensor(np.array([0, 2, 1, 2], dtype)), ignore_index=2).item()
    assert inside == pytest.approx(F.cross_entropy(x[[0, 2]], tl.tensor(np.array([0, 1]))).item())


def test_cross_entropy_bad_label_smoothing():
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(tl.randn(2, 3), tl.tensor([0, 1]), label_smoothing=1.5)


# --- mse_loss -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (1,), (5,), (3, 4), (0, 3)], ids=str)
def test_mse_loss_matches_torch(device, reduction, shape):
    check_op(lambda a, b: F.mse_loss(a, b, reduction=reduction),
             lambda a, b: TF.mse_loss(a, b, reduction=reduction), rand(shape, seed=20), rand(shape, seed=21),
             device=device)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_weighted_noncontiguous_and_float32(device, reduction):
    x, y, w = noncontiguous(rand((3, 4), seed=22)), rand((3, 4), seed=23), rand((3, 4), seed=24, low=0.1)
    check_op(lambda a, b, c: F.mse_loss(a, b, reduction=reduction, weight=c),
             lambda a, b, c: TF.mse_loss(a, b, reduction=reduction, weight=c), x, y, w, device=device)
    x32, y32 = rand((64, 10), np.float32, seed=25), rand((64, 10), np.float32, seed=26)
    out = check_op(lambda a, b: F.mse_loss(a, b, reduction=reduction),
                   lambda a, b: TF.mse_loss(a, b, reduction=reduction), x32, y32, device=device, rtol=1e-5,
                   atol=1e-6)
    assert out.dtype == tl.float32


def test_mse_loss_broadcast_warns_and_mismatch_raises(device):
    x, y = rand((3, 4), seed=27), rand((4,), seed=28)
    with pytest.warns(UserWarning, match="different to the input size"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)     # torch's own warning
            check_op(F.mse_loss, TF.mse_loss, x, y, device=device)
        F.mse_loss(tl.tensor(x), tl.tensor(y))
    with pytest.raises(tl.ShapeError, match=r"mse_loss: input of shape \(3, 4\) and target of shape \(3,\)"):
        F.mse_loss(tl.ones(3, 4), tl.ones(3))
    with pytest.raises(TypeError, match=r"target is int64.*\.float\(\)"):
        F.mse_loss(tl.ones(3), tl.tensor([1, 2, 3]))


# --- binary_cross_entropy_with_logits -----------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("pos", [False, True], ids=["plain", "pos_weight"])
@pytest.mark.parametrize("shape", [(4, 3), (5,), (1, 1), (0, 3), (2, 3, 2)], ids=str)
def test_bce_with_logits_matches_torch(device, reduction, weighted, pos, shape):
    x, y = rand(shape, seed=29, low=-4, high=4), rand(shape, seed=30, low=0, high=1)
    w = rand(shape[-1:], seed=31, low=0.2, high=2.0) if weighted else None
    pw = rand(shape[-1:], seed=32, low=0.2, high=3.0) if pos else None
    kw_tl = {"weight": None if w is None else tl.tensor(w, device=device),
             "pos_weight": None if pw is None else tl.tensor(pw, device=device)}
    kw_th = {"weight": None if w is None else th.tensor(w), "pos_weight": None if pw is None else th.tensor(pw)}
    check_op(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw_tl),
             lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw_th), x, y,
             device=device)


def test_bce_with_logits_is_stable_and_float32(device):
    x = np.array([-800.0, -100.0, -1.0, 0.0, 1.0, 100.0, 800.0])
    y = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.0])
    out = check_op(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none"),
                   lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction="none"), x, y, device=device,
                   gradcheck=False)
    assert np.isfinite(host(out)).all()
    x32, y32 = rand((32, 5), np.float32, seed=33, low=-5, high=5), rand((32, 5), np.float32, seed=34, low=0)
    out = check_op(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, x32, y32,
                   device=device, rtol=1e-5, atol=1e-6)
    assert out.dtype == tl.float32


def test_bce_with_logits_errors():
    with pytest.raises(tl.ShapeError, match=r"target size \(3,\) must be the same as input size \(3, 1\)"):
        F.binary_cross_entropy_with_logits(tl.ones(3, 1), tl.ones(3))
    with pytest.raises(TypeError, match=r"target is int64.*\.float\(\)"):
        F.binary_cross_entropy_with_logits(tl.ones(3), tl.tensor([0, 1, 1]))
    with pytest.raises(tl.ShapeError, match=r"pos_weight of shape \(2,\)"):
        F.binary_cross_entropy_with_logits(tl.ones(4, 3), tl.ones(4, 3), pos_weight=tl.ones(2))


# --- one_hot ------------------------------------------------------------------------------------------
def test_one_hot_matches_torch(device):
    t = np.array([[0, 2], [1, 4]])
    for n in (-1, 5, 7):
        ours = tl.one_hot(tl.tensor(t, device=device), n)
        ref = TF.one_hot(th.tensor(t), n)
        assert ours.dtype == tl.int64 and not ours.requires_grad
        np.testing.assert_array_equal(host(ours), ref.numpy())
    assert F.one_hot(tl.tensor(3, device=device), 4).tolist() == [0, 0, 0, 1]
    assert F.one_hot(tl.zeros(0, dtype=tl.int64, device=device), 3).shape == (0, 3)


def test_one_hot_errors():
    with pytest.raises(ValueError, match="smaller than num_classes=3"):
        F.one_hot(tl.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="non-negative"):
        F.one_hot(tl.tensor([0, -1]))
    with pytest.raises(ValueError, match="empty tensor"):
        F.one_hot(tl.zeros(0, dtype=tl.int64))
    with pytest.raises(TypeError, match=r"integer tensor.*\.long\(\)"):
        F.one_hot(tl.ones(3))


# --- meta ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_meta_losses(reduction):
    x = tl.empty(8, 5, 3, device="meta", requires_grad=True)
    t = tl.empty(8, 3, dtype=tl.int64, device="meta")
    expected = (8, 3) if reduction == "none" else ()
    for loss in (F.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1),
                 F.nll_loss(x, t, reduction=reduction),
                 F.mse_loss(x, tl.empty(8, 5, 3, device="meta"), reduction=reduction),
                 F.binary_cross_entropy_with_logits(x, tl.empty(8, 5, 3, device="meta"), reduction=reduction)):
        want = expected if loss.grad_fn.__class__.__name__ in ("CrossEntropy", "NLLLoss") else (
            (8, 5, 3) if reduction == "none" else ())
        assert isinstance(loss.array, MetaArray) and loss.shape == want and loss.dtype == tl.float32
        loss.backward(tl.empty(*want, device="meta"))
        assert isinstance(x.grad.array, MetaArray) and x.grad.shape == (8, 5, 3)
        x.grad = None
    with pytest.raises(tl.ShapeError, match="batch size"):
        F.cross_entropy(x, tl.empty(7, 3, dtype=tl.int64, device="meta"))
    oh = tl.one_hot(tl.empty(4, dtype=tl.int64, device="meta"), 6)
    assert isinstance(oh.array, MetaArray) and oh.shape == (4, 6) and oh.dtype == tl.int64
    with pytest.raises(ValueError, match="num_classes"):
        tl.one_hot(tl.empty(4, dtype=tl.int64, device="meta"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_fused_kernel_path(device, monkeypatch, reduction, smoothing):
    """The branch that cuda takes for plain (N, C) logits (class_loss.softmax_xent_fwd/bwd), forced on:
    on cpu arrays it runs those functions' reference implementation."""
    from tinylazy.ops import class_loss
    calls = []
    fused_bwd = class_loss.softmax_xent_bwd
    monkeypatch.setattr(class_loss, "use_fused_kernel", lambda x2, weight, has_ignored: True)
    monkeypatch.setattr(class_loss, "softmax_xent_bwd", lambda *args: calls.append(1) or fused_bwd(*args))
    x, t = rand((6, 4), seed=40, low=-3, high=3), targets((6, 4), 4, seed=41)
    check_op(*ce_pair(device, reduction=reduction, label_smoothing=smoothing), x, t, device=device)
    assert calls
