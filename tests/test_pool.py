"""max_pool2d, avg_pool2d, adaptive_avg_pool2d: forward and gradients equal PyTorch's across kernel, stride,
padding, dilation, ceil_mode, count_include_pad, odd sizes, batch 1, unbatched and non-contiguous inputs;
PyTorch's tie rule and return_indices; float64 gradchecks; meta shapes; clear errors."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy.capturing import CaptureWarning
from tinylazy.meta import MetaArray
from helpers import check_op, host, noncontiguous, rand, torch

th = torch()
TF = th.nn.functional
RTOL, ATOL = 1e-8, 1e-10


def pool(name, *args, **kw):
    """(ours, PyTorch's) pooling function of one input, with these arguments after it."""
    ours, theirs = getattr(F, name), getattr(TF, name)
    return (lambda x: ours(x, *args, **kw)), (lambda x: theirs(x, *args, **kw))


MAX_CASES = [  # input shape, args, keywords
    ((2, 3, 8, 8), (2,), {}),
    ((2, 3, 9, 7), (3, 2, 1), {}),
    ((1, 2, 9, 7), ((3, 2), (2, 1), (1, 1), (2, 1)), {}),
    ((2, 2, 9, 7), ((3, 2), (2, 1), (1, 1), (2, 1), True), {}),
    ((2, 2, 10, 11), (3,), dict(stride=2, padding=1, ceil_mode=True)),
    ((1, 1, 5, 5), (2,), dict(stride=1)),                       # overlapping windows
    ((2, 2, 7, 7), (3,), dict(stride=1, padding=1, dilation=2)),
    ((3, 10, 11), (3, 2, 1, 1, True), {}),                      # unbatched
    ((2, 3, 1, 1), (1,), {}),
    ((1, 2, 6, 5), (4, 3), dict(ceil_mode=True)),
]


@pytest.mark.parametrize("shape,args,kw", MAX_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in MAX_CASES])
def test_max_pool2d_matches_torch(device, shape, args, kw):
    ours, theirs = pool("max_pool2d", *args, **kw)
    check_op(ours, theirs, rand(shape, seed=1), device=device, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape,args,kw", MAX_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in MAX_CASES])
def test_max_pool2d_return_indices(device, shape, args, kw):
    x = rand(shape, seed=2)
    out, idx = F.max_pool2d(tl.tensor(x, device=device), *args, return_indices=True, **kw)
    ref, ref_idx = TF.max_pool2d(th.from_numpy(x), *args, return_indices=True, **kw)
    np.testing.assert_array_equal(host(out), ref.numpy())
    np.testing.assert_array_equal(host(idx), ref_idx.numpy())
    assert idx.dtype == tl.int64 and not idx.requires_grad


def test_max_pool2d_ties_go_to_the_first_max(device):
    """Plateaus of equal values: PyTorch gives each window's gradient to its first max (row-major)."""
    x = np.array([[[[1., 1, 2, 2, 0], [1, 1, 2, 2, 0], [3, 0, 3, 3, 3], [0, 3, 3, 3, 3], [5, 5, 5, 5, 5]]]])
    for kw in (dict(kernel_size=2), dict(kernel_size=2, stride=1), dict(kernel_size=3, stride=1, padding=1),
               dict(kernel_size=2, ceil_mode=True)):
        ours, theirs = pool("max_pool2d", **kw)
        check_op(ours, theirs, x, device=device, gradcheck=False)
        _, idx = F.max_pool2d(tl.tensor(x, device=device), return_indices=True, **kw)
        np.testing.assert_array_equal(host(idx), TF.max_pool2d(th.from_numpy(x), return_indices=True, **kw)[1])


def test_max_pool2d_nan_and_inf_like_torch(device):
    x = np.array([[[[1., np.nan, 2, 2], [2, 1, np.nan, np.nan], [np.nan, 1, 3, -np.inf], [0, 0, 3, np.inf]]]])
    for kw in (dict(kernel_size=2), dict(kernel_size=2, stride=1)):
        t = tl.tensor(x, device=device, requires_grad=True)
        r = th.tensor(x, requires_grad=True)
        out, idx = F.max_pool2d(t, return_indices=True, **kw)
        ref, ref_idx = TF.max_pool2d(r, return_indices=True, **kw)
        np.testing.assert_array_equal(host(out), ref.detach().numpy())
        np.testing.assert_array_equal(host(idx), ref_idx.numpy())
        out.sum().backward()
        ref.sum().backward()
        np.testing.assert_array_equal(host(t.grad), r.grad.numpy())


AVG_CASES = [
    ((2, 3, 8, 8), (2,), {}),
    ((2, 3, 9, 7), (3, 2, 1), {}),
    ((2, 3, 9, 7), (3, 2, 1), dict(count_include_pad=False)),
    ((1, 2, 10, 7), ((3, 2), (2, 3), (1, 1)), dict(ceil_mode=True)),
    ((2, 2, 10, 7), ((3, 2), (2, 3), (1, 1)), dict(ceil_mode=True, count_include_pad=False)),
    ((2, 2, 11, 10), (3,), dict(stride=2, ceil_mode=True)),
    ((3, 10, 11), (3, 2, 1), dict(divisor_override=5)),        # unbatched
    ((1, 1, 5, 6), (2,), dict(stride=1)),                       # overlapping windows
    ((2, 3, 1, 1), (1,), {}),
    ((1, 2, 7, 7), (7,), {}),
]


@pytest.mark.parametrize("shape,args,kw", AVG_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in AVG_CASES])
def test_avg_pool2d_matches_torch(device, shape, args, kw):
    ours, theirs = pool("avg_pool2d", *args, **kw)
    check_op(ours, theirs, rand(shape, seed=3), device=device, rtol=RTOL, atol=ATOL)


ADAPTIVE_CASES = [((2, 3, 10, 7), (3, 4)), ((2, 3, 10, 8), (5, 4)), ((2, 3, 10, 8), 1), ((3, 10, 8), (None, 3)),
                  ((1, 2, 5, 5), 5), ((1, 2, 3, 5), (7, 2)), ((2, 1, 6, 6), (4, 4))]


@pytest.mark.parametrize("shape,size", ADAPTIVE_CASES, ids=[f"{c[0]}-{c[1]}" for c in ADAPTIVE_CASES])
def test_adaptive_avg_pool2d_matches_torch(device, shape, size):
    ours, theirs = pool("adaptive_avg_pool2d", size)
    check_op(ours, theirs, rand(shape, seed=4), device=device, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name,args", [("max_pool2d", (3, 2, 1)), ("avg_pool2d", (3, 2, 1)),
                                       ("adaptive_avg_pool2d", ((3, 2),))])
def test_pools_on_noncontiguous_and_batch_last_inputs(device, name, args):
    ours, theirs = pool(name, *args)
    check_op(ours, theirs, noncontiguous(rand((2, 3, 7, 6), seed=5)), device=device, rtol=RTOL, atol=ATOL)
    batch_last = rand((3, 7, 6, 2), seed=6).transpose(3, 0, 1, 2)
    check_op(ours, theirs, batch_last, device=device, rtol=RTOL, atol=ATOL)


def test_pool_after_conv_chain(device):
    def ours(x, w):
        return F.avg_pool2d(F.max_pool2d(F.conv2d(x, w, padding=1), 2), 2, ceil_mode=True)

    def theirs(x, w):
        return TF.avg_pool2d(TF.max_pool2d(TF.conv2d(x, w, padding=1), 2), 2, ceil_mode=True)
    check_op(ours, theirs, rand((2, 2, 10, 9), seed=7), rand((3, 2, 3, 3), seed=8), device=device,
             rtol=RTOL, atol=ATOL, gradcheck=False)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pools_float32(device, name):
    ours, theirs = pool(name, 2, 2)
    out = check_op(ours, theirs, rand((64, 6, 28, 28), np.float32, 9), device=device, rtol=1e-6, atol=1e-6)
    assert out.dtype == tl.float32


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       dil=st.integers(1, 2), ceil=st.booleans(), include=st.booleans())
def test_pools_random_geometry(h, w, kh, kw, sh, sw, ph, pw, dil, ceil, include):
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    x = rand((2, 2, h, w), seed=10)
    for name, kw_ in (("max_pool2d", dict(dilation=dil)), ("avg_pool2d", dict(count_include_pad=include))):
        d = kw_.get("dilation", 1)
        for n, k, s, p in ((h, kh, sh, ph), (w, kw, sw, pw)):
            out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
            out -= ceil and (out - 1) * s >= n + p
            if out < 1:
                return
            if any(not any(0 <= o * s - p + i * d < n for i in range(k)) for o in range(out)):
                return     # a dilated window of padding only: PyTorch's gradient lands outside the plane
        ours, theirs = pool(name, (kh, kw), (sh, sw), (ph, pw), ceil_mode=ceil, **kw_)
        check_op(ours, theirs, x, rtol=RTOL, atol=ATOL, gradcheck=False)


def test_pools_gradcheck(device):
    x = tl.tensor(rand((1, 2, 5, 4), seed=11), device=device, requires_grad=True)
    assert tl.autograd.gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True), (x,))
    assert tl.autograd.gradcheck(lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False), (x,))
    assert tl.autograd.gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 3)), (x,))


# --- meta -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [
    lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True), lambda t: F.max_pool2d(t, 2, return_indices=True)[1],
    lambda t: F.avg_pool2d(t, (3, 2), (2, 3), 1, ceil_mode=True), lambda t: F.adaptive_avg_pool2d(t, (3, 4)),
    lambda t: F.adaptive_avg_pool2d(t, 1), lambda t: F.adaptive_avg_pool2d(t, (5, 2)),
])
@pytest.mark.parametrize("shape", [(2, 3, 10, 8), (3, 9, 7)])
def test_pools_meta_shapes_match_cpu(fn, shape):
    want = fn(tl.ones(*shape))
    x = tl.empty(*shape, device="meta", requires_grad=True)
    got = fn(x)
    assert isinstance(got.array, MetaArray) and got.shape == want.shape and got.dtype == want.dtype
    if got.requires_grad:
        got.backward(tl.empty(*got.shape, device="meta"))
        assert isinstance(x.grad.array, MetaArray) and x.grad.shape == shape


# --- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool_errors(name):
    fn = getattr(F, name)
    with pytest.raises(tl.ShapeError, match=rf"{name}: expected a 3-D .* or 4-D .* got shape \(4, 4\)"):
        fn(tl.ones(4, 4), 2)
    with pytest.raises(tl.ShapeError, match=rf"{name}: input of shape \(1, 1, 2, 2\) is too small.*0x0"):
        fn(tl.ones(1, 1, 2, 2), 3)
    with pytest.raises(ValueError, match=rf"{name}: padding must be between 0 and half the kernel size"):
        fn(tl.ones(1, 1, 6, 6), 2, padding=2)
    with pytest.raises(ValueError, match=rf"{name}: kernel_size, stride and dilation must be positive"):
        fn(tl.ones(1, 1, 6, 6), 0)
    with pytest.raises(TypeError, match=rf"{name}: kernel_size must be an int or a pair"):
        fn(tl.ones(1, 1, 6, 6), (2, 2, 2))
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point input, got int64"):
        fn(tl.ones(1, 1, 6, 6, dtype=tl.int64), 2)


def test_adaptive_pool_errors():
    with pytest.raises(tl.ShapeError, match=r"adaptive_avg_pool2d: expected a 3-D .* got shape \(5,\)"):
        F.adaptive_avg_pool2d(tl.ones(5), 2)
    with pytest.raises(tl.ShapeError, match=r"adaptive_avg_pool2d: output_size must be positive, got \(0, 2\)"):
        F.adaptive_avg_pool2d(tl.ones(1, 2, 4, 4), (0, 2))
    with pytest.raises(TypeError, match="adaptive_avg_pool2d: output_size must be an int or a pair"):
        F.adaptive_avg_pool2d(tl.ones(1, 2, 4, 4), (1, 2, 3))


def _batch_last(a):
    """a (N, C, H, W) with memory laid out as (C, H, W, N): conv2d's output layout."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


@pytest.mark.parametrize("name,args", [("max_pool2d", (2, 2)), ("max_pool2d", (3, 2, 1)),
                                       ("avg_pool2d", (2, 2)), ("avg_pool2d", (3, 2, 1))])
@pytest.mark.parametrize("g_layout", ["batch-last", "c-order", "noncontiguous"])
@pytest.mark.parametrize("shape", [(3, 2, 6, 4), (1, 2, 6, 4)], ids=str)
def test_pool_backward_gradient_layouts(device, name, args, g_layout, shape):
    """Max pool's backward brings the gradient into the output's memory layout first (Flatten hands a
    C-ordered one to a pool over conv2d's batch-last output); avg pool's works on any layout as it is. Every
    layout, batch 1 included, gives torch's gradient. ReLU'd input: ties at zero (the first maximal tap wins)."""
    a = np.maximum(rand(shape, seed=40), 0)
    x = tl.tensor(_batch_last(a), device=device, requires_grad=True)
    ours, theirs = pool(name, *args)
    y = ours(x)
    gy = rand(tuple(y.shape), seed=41)
    g = {"batch-last": _batch_last, "c-order": np.ascontiguousarray, "noncontiguous": noncontiguous}[g_layout](gy)
    y.backward(tl.tensor(g, device=device))
    xr = th.from_numpy(a).requires_grad_()
    theirs(xr).backward(th.from_numpy(gy))
    np.testing.assert_allclose(host(x.grad), xr.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_in_layout_copies_only_when_the_layout_differs():
    from tinylazy.ops.pool import _in_layout, _layout
    bl = _batch_last(rand((3, 2, 4, 5), seed=42))
    assert _in_layout(np, bl, _layout(bl)) is bl
    c = np.ascontiguousarray(bl)
    moved = _in_layout(np, c, _layout(bl))
    assert moved is not c and moved.strides == bl.strides
    np.testing.assert_array_equal(moved, c)
    back = _in_layout(np, moved, (0, 1, 2, 3))                       # to C order, unbatched shapes too
    assert back.flags.c_contiguous and np.array_equal(back, c)
    u = rand((2, 4, 5), seed=43).transpose(0, 2, 1)
    assert _in_layout(np, np.ascontiguousarray(u), _layout(u)).strides == u.strides


def test_max_pool2d_nan_rule_changes_only_nan_windows():
    """`_winners` with the NaN rule (cuda, and steps recorded by tl.capture) picks the same winners as the
    cheaper first-equal pass wherever no NaN is present, and PyTorch's last NaN where one is."""
    from tinylazy.ops.conv import _taps
    from tinylazy.ops.pool import _max_forward, _winners
    x = np.random.default_rng(5).integers(0, 3, (2, 3, 9, 9)).astype(np.float64)     # many ties
    for kernel, stride in (((2, 2), (2, 2)), ((3, 3), (1, 1))):
        geom = (kernel, stride, (1, 1), (0, 0, 0, 0), (( 9 - kernel[0]) // stride[0] + 1,) * 2)
        xpad, out = _max_forward(np, tl.tensor(x).array, geom)
        taps = list(_taps(kernel[0], kernel[1], *geom[4], stride, (1, 1)))
        plain, ruled = _winners(np, xpad, out, taps, False), _winners(np, xpad, out, taps, True)
        for a, b in zip(plain, ruled):
            np.testing.assert_array_equal(a, b)
        assert (sum(w.astype(int) for w in ruled) == 1).all()          # one winner per window


def test_captured_max_pool2d_gradient_follows_torch_on_nan_in_a_later_batch():
    """A recorded step decides nothing from values: a NaN in a replayed batch gets PyTorch's gradient."""
    t = tl.zeros(1, 1, 4, 4, requires_grad=True)

    @tl.capture
    def step(x):
        t.grad = None
        y = F.max_pool2d(t + x, 2, stride=1)
        y.sum().backward()
        return y

    clean = np.arange(16.0).reshape(1, 1, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CaptureWarning)          # recorded, not run eagerly
        for _ in range(3):
            step(tl.tensor(clean))
    assert [type(p).__name__ for p in step.programs.values()] == ["Program"]
    dirty = clean.copy()
    dirty[0, 0, 1, 2] = dirty[0, 0, 2, 1] = np.nan
    step(tl.tensor(dirty))
    r = th.zeros(1, 1, 4, 4, requires_grad=True)
    TF.max_pool2d(r + th.from_numpy(dirty), 2, stride=1).sum().backward()
    np.testing.assert_array_equal(host(t.grad), r.grad.numpy())
