"""batch_norm and layer_norm: forward, gradients and running statistics equal PyTorch's (train and eval,
with and without affine parameters, 2-D/3-D/4-D inputs, batch-last and non-contiguous inputs); float64
gradchecks; meta shapes; clear errors."""
import numpy as np
import pytest

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy.meta import MetaArray
from helpers import assert_close, check_op, host, noncontiguous, rand, torch

th = torch()
TF = th.nn.functional
RTOL, ATOL = 1e-8, 1e-10


def stats(c, seed):
    return rand((c,), seed=seed), rand((c,), seed=seed + 1, low=0.5, high=2.0)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 7), (2, 3, 4, 5), (1, 2, 3, 1), (3, 1, 2)], ids=str)
def test_batch_norm_matches_torch(device, shape, training, affine):
    c = shape[1]
    rm, rv = stats(c, 1)
    ours_rm, ours_rv = tl.tensor(rm.copy(), device=device), tl.tensor(rv.copy(), device=device)
    th_rm, th_rv = th.from_numpy(rm.copy()), th.from_numpy(rv.copy())

    def ours(x, *wb):
        return F.batch_norm(x, ours_rm, ours_rv, *wb, training=training, momentum=0.3, eps=1e-4)

    def theirs(x, *wb):
        return TF.batch_norm(x, th_rm, th_rv, *wb, training=training, momentum=0.3, eps=1e-4)
    args = (rand(shape, seed=3),) + ((rand((c,), seed=4), rand((c,), seed=5)) if affine else ())
    check_op(ours, theirs, *args, device=device, rtol=RTOL, atol=ATOL, gradcheck=False)
    # the running statistics moved exactly as PyTorch's (once per forward: check_op runs one each)
    assert_close(ours_rm, th_rm, RTOL, ATOL, "running_mean")
    assert_close(ours_rv, th_rv, RTOL, ATOL, "running_var")


def test_batch_norm_training_without_running_stats(device):
    def ours(x, w, b):
        return F.batch_norm(x, None, None, w, b, training=True)

    def theirs(x, w, b):
        return TF.batch_norm(x, None, None, w, b, training=True)
    check_op(ours, theirs, rand((4, 2, 3), seed=6), rand((2,), seed=7), rand((2,), seed=8), device=device,
             rtol=RTOL, atol=ATOL)


def test_batch_norm_gradcheck(device):
    x = tl.tensor(rand((3, 2, 2, 2), seed=9), device=device, requires_grad=True)
    w = tl.tensor(rand((2,), seed=10), device=device, requires_grad=True)
    b = tl.tensor(rand((2,), seed=11), device=device, requires_grad=True)
    assert tl.autograd.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (x, w, b))
    rm, rv = (tl.tensor(a, device=device) for a in stats(2, 12))
    assert tl.autograd.gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b), (x, w, b))


def test_batch_norm_batch_last_and_noncontiguous_inputs(device):
    def ours(x):
        return F.batch_norm(x, None, None, training=True)

    def theirs(x):
        return TF.batch_norm(x, None, None, training=True)
    check_op(ours, theirs, rand((3, 4, 5, 2), seed=14).transpose(3, 0, 1, 2), device=device, rtol=RTOL, atol=ATOL)
    check_op(ours, theirs, noncontiguous(rand((2, 3, 4, 3), seed=15)), device=device, rtol=RTOL, atol=ATOL)


def test_batch_norm_float32_stays_float32(device):
    rm, rv = (tl.tensor(a.astype(np.float32), device=device) for a in stats(6, 16))
    x = tl.tensor(rand((8, 6, 5, 5), np.float32, 18), device=device, requires_grad=True)
    y = F.batch_norm(x, rm, rv, training=True)
    y.sum().backward()
    assert y.dtype == tl.float32 and x.grad.dtype == tl.float32 and rm.dtype == tl.float32


def test_batch_norm_only_needed_gradients(device):
    x = tl.tensor(rand((4, 3), seed=19), device=device)
    w = tl.tensor(rand((3,), seed=20), device=device, requires_grad=True)
    y = F.batch_norm(x, None, None, w, None, training=True)
    y.backward(tl.tensor(rand((4, 3), seed=21), device=device))
    assert x.grad is None and w.grad is not None


@pytest.mark.parametrize("shape,norm", [((4, 5), (5,)), ((2, 3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), 1),
                                        ((2, 2, 2, 3), (2, 2, 3)), ((0, 4), (4,))], ids=str)
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layer_norm_matches_torch(device, shape, norm, affine):
    ns = (norm,) if isinstance(norm, int) else norm
    w, b = rand(ns, seed=22), rand(ns, seed=23)

    def call(fn, x, *params):
        it = iter(params)
        kw = {k: next(it) for k in ("weight", "bias") if affine in ("both", k)}
        return fn(x, norm if fn is F.layer_norm else ns, eps=1e-4, **kw)      # ours also takes a bare int
    params = [p for k, p in (("weight", w), ("bias", b)) if affine in ("both", k)]
    check_op(lambda *a: call(F.layer_norm, *a), lambda *a: call(TF.layer_norm, *a), rand(shape, seed=24), *params,
             device=device, rtol=RTOL, atol=ATOL)


def test_layer_norm_noncontiguous_and_float32(device):
    check_op(lambda x: F.layer_norm(x, (3,)), lambda x: TF.layer_norm(x, (3,)),
             noncontiguous(rand((4, 3), seed=25)), device=device, rtol=RTOL, atol=ATOL)
    x = tl.tensor(rand((8, 16), np.float32, 26), device=device, requires_grad=True)
    w = tl.ones(16, device=device, requires_grad=True)
    y = F.layer_norm(x, 16, w)
    y.sum().backward()
    assert y.dtype == tl.float32 and x.grad.dtype == tl.float32 and w.grad.dtype == tl.float32


# --- meta -------------------------------------------------------------------------------------------
def test_norms_meta_shapes():
    x = tl.empty(4, 3, 5, 5, device="meta", requires_grad=True)
    w = tl.empty(3, device="meta", requires_grad=True)
    b = tl.empty(3, device="meta", requires_grad=True)
    rm, rv = tl.empty(3, device="meta"), tl.empty(3, device="meta")
    for training in (True, False):
        y = F.batch_norm(x, rm, rv, w, b, training=training)
        assert isinstance(y.array, MetaArray) and y.shape == (4, 3, 5, 5) and y.dtype == tl.float32
        y.backward(tl.empty(*y.shape, device="meta"))
        assert x.grad.shape == (4, 3, 5, 5) and w.grad.shape == (3,) and b.grad.shape == (3,)
    x = tl.empty(2, 7, 6, device="meta", requires_grad=True)
    w = tl.empty(7, 6, device="meta", requires_grad=True)
    y = F.layer_norm(x, (7, 6), w)
    assert isinstance(y.array, MetaArray) and y.shape == (2, 7, 6)
    y.backward(tl.empty(2, 7, 6, device="meta"))
    assert isinstance(w.grad.array, MetaArray) and w.grad.shape == (7, 6)


# --- errors -----------------------------------------------------------------------------------------
def test_batch_norm_errors():
    with pytest.raises(tl.ShapeError, match=r"batch_norm: expected weight of shape \(3,\).*\(4, 3\).*got \(4,\)"):
        F.batch_norm(tl.ones(4, 3), None, None, tl.ones(4), training=True)
    with pytest.raises(tl.ShapeError, match=r"batch_norm: expected running_mean of shape \(3,\).*got \(2,\)"):
        F.batch_norm(tl.ones(4, 3), tl.zeros(2), tl.ones(3))
    with pytest.raises(tl.ShapeError, match=r"batch_norm: expected an input of shape \(N, C\).*got shape \(5,\)"):
        F.batch_norm(tl.ones(5), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per channel when training.*\(1, 3\)"):
        F.batch_norm(tl.ones(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var are required in eval mode"):
        F.batch_norm(tl.ones(2, 3), None, None)
    with pytest.raises(TypeError, match="batch_norm: expected a floating-point input, got int64"):
        F.batch_norm(tl.ones(2, 3, dtype=tl.int64), None, None, training=True)


def test_layer_norm_errors():
    with pytest.raises(tl.ShapeError, match=r"layer_norm: .*normalized_shape=\(4,\).*got input of shape \(2, 3\)"):
        F.layer_norm(tl.ones(2, 3), 4)
    with pytest.raises(tl.ShapeError, match=r"layer_norm: expected weight of shape normalized_shape=\(3,\), got \(2"):
        F.layer_norm(tl.ones(2, 3), (3,), tl.ones(2))
    with pytest.raises(TypeError, match="layer_norm: normalized_shape must be an int or a sequence of ints"):
        F.layer_norm(tl.ones(2, 3), (3.0,))
    with pytest.raises(TypeError, match="layer_norm: expected a floating-point input, got int64"):
        F.layer_norm(tl.ones(2, 3, dtype=tl.int64), 3)


def test_running_stats_are_updated_in_place(device):
    rm, rv = tl.zeros(2, device=device), tl.ones(2, device=device)
    before = rm.array
    x = tl.tensor(np.array([[1.0, 2.0], [3.0, 6.0]], np.float32), device=device)
    F.batch_norm(x, rm, rv, training=True, momentum=0.5)
    assert rm.array is before
    np.testing.assert_allclose(host(rm), [1.0, 2.0])
    np.testing.assert_allclose(host(rv), [0.5 + 0.5 * 2.0, 0.5 + 0.5 * 8.0])     # unbiased batch variance


def batch_last(a):
    """a (N, C, H, W) with memory laid out as (C, H, W, N): conv2d's output layout."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (1, 3, 2, 2), (2, 1, 3, 3), (3, 2, 1, 1)], ids=str)
@pytest.mark.parametrize("g_layout", ["batch-last", "c-order"])
def test_batch_norm_conv_output_layout(device, shape, g_layout):
    """conv2d's batch-last output (channels as contiguous blocks), with the gradient in the same layout or
    C-ordered (as Flatten hands it back), batch 1, one channel, 1x1 planes: all equal torch's (forward,
    every gradient, running statistics), in float64 and float32, and keep the dtype."""
    for dtype, rtol, atol in ((np.float64, RTOL, ATOL), (np.float32, 1e-5, 1e-5)):
        a, w, b = rand(shape, dtype, 30), rand(shape[1:2], dtype, 31), rand(shape[1:2], dtype, 32)
        gy = rand(shape, dtype, 33)
        x = tl.tensor(batch_last(a), device=device, requires_grad=True)
        g = batch_last(gy) if g_layout == "batch-last" else gy
        wt, bt = (tl.tensor(v, device=device, requires_grad=True) for v in (w, b))
        rm, rv = (tl.tensor(v.astype(dtype), device=device) for v in stats(shape[1], 34))
        y = F.batch_norm(x, rm, rv, wt, bt, training=True)
        y.backward(tl.tensor(g, device=device))
        xr, wr, br = (th.from_numpy(np.ascontiguousarray(v)).requires_grad_() for v in (a, w, b))
        rmr, rvr = (th.from_numpy(v.astype(dtype)) for v in stats(shape[1], 34))
        yr = TF.batch_norm(xr, rmr, rvr, wr, br, training=True)
        yr.backward(th.from_numpy(np.ascontiguousarray(gy)))
        for ours, theirs, what in ((y, yr, "forward"), (x.grad, xr.grad, "dx"), (wt.grad, wr.grad, "dw"),
                                   (bt.grad, br.grad, "db"), (rm, rmr, "running_mean"), (rv, rvr, "running_var")):
            assert_close(ours, theirs, rtol, atol, what)
            assert host(ours).dtype == dtype
