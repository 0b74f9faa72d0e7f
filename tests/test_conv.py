"""F.conv2d: forward and gradients equal PyTorch's across stride, padding (ints, pairs, 'same', 'valid'),
dilation, groups, odd sizes, batch 1, unbatched and non-contiguous inputs; float64 gradchecks; only the
needed gradients; meta shapes; clear errors."""
import functools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy.meta import MetaArray
from helpers import check_op, host, noncontiguous, rand, torch

th = torch()
TF = th.nn.functional
RTOL, ATOL = 1e-8, 1e-10


def conv(**kw):
    return functools.partial(F.conv2d, **kw), functools.partial(TF.conv2d, **kw)


CASES = [  # x shape, weight shape, conv2d keywords
    ((2, 3, 7, 8), (4, 3, 3, 3), {}),
    ((2, 3, 7, 8), (4, 3, 3, 2), dict(stride=2, padding=1)),
    ((1, 3, 9, 7), (5, 3, 3, 3), dict(stride=(2, 3), padding=(2, 0))),
    ((2, 2, 9, 10), (3, 2, 3, 2), dict(dilation=2, padding=1)),
    ((2, 2, 11, 9), (3, 2, 2, 3), dict(stride=(1, 2), dilation=(3, 1), padding=(0, 2))),
    ((2, 4, 7, 6), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ((1, 6, 5, 7), (6, 1, 3, 3), dict(groups=6, stride=2, padding=1)),             # depthwise
    ((2, 6, 6, 5), (3, 2, 1, 1), dict(groups=3)),                                  # 1x1, grouped
    ((3, 3, 5, 5), (2, 3, 5, 5), {}),                                              # kernel = input
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),
    ((2, 3, 8, 8), (4, 3, 4, 4), dict(stride=4)),
    ((2, 3, 7, 6), (2, 3, 3, 3), dict(stride=3, padding=2, dilation=2)),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("xs,ws,kw", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_conv2d_matches_torch(device, xs, ws, kw, bias):
    ours, theirs = conv(**kw)
    x, w, b = rand(xs, seed=1), rand(ws, seed=2), rand(ws[:1], seed=3)
    args = (x, w, b) if bias else (x, w)
    check_op(ours, theirs, *args, device=device, rtol=RTOL, atol=ATOL)


@pytest.mark.filterwarnings("ignore:Using padding='same'")      # PyTorch's note about its own padded copy
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("ws,dil", [((3, 2, 3, 3), 1), ((3, 2, 2, 4), 1), ((3, 2, 3, 2), (2, 3))])
def test_conv2d_string_padding(device, padding, ws, dil):
    ours, theirs = conv(padding=padding, dilation=dil)
    x = rand((2, 2, 9, 10), seed=4)
    out = check_op(ours, theirs, x, rand(ws, seed=5), rand(ws[:1], seed=6), device=device, rtol=RTOL, atol=ATOL)
    if padding == "same":
        assert out.shape[-2:] == x.shape[-2:]


def test_conv2d_unbatched_input(device):
    ours, theirs = conv(padding=1, stride=(1, 2))
    out = check_op(ours, theirs, rand((3, 6, 7), seed=7), rand((4, 3, 3, 3), seed=8), rand((4,), seed=9),
                   device=device, rtol=RTOL, atol=ATOL)
    assert out.shape == (4, 6, 4)


def test_conv2d_noncontiguous_inputs(device):
    x = noncontiguous(rand((2, 3, 7, 5), seed=10))
    w = rand((3, 3, 3, 4), seed=11).transpose(3, 1, 2, 0)       # a permuted (non-contiguous) weight
    ours, theirs = conv(padding=1)
    check_op(ours, theirs, x, w, rand((4,), seed=12), device=device, rtol=RTOL, atol=ATOL)
    xt = rand((5, 6, 3, 2), seed=13).transpose(3, 2, 1, 0)       # batch-last memory, like conv2d's outputs
    check_op(ours, theirs, xt, rand((4, 3, 3, 3), seed=14), device=device, rtol=RTOL, atol=ATOL)


def test_conv2d_batch_of_conv_outputs_chains(device):
    """A conv of a conv (whose output is a batch-last view on cpu) equals PyTorch's, gradients included."""
    def ours(x, w1, w2):
        return F.conv2d(F.relu(F.conv2d(x, w1, padding=1)), w2, stride=2)

    def theirs(x, w1, w2):
        return TF.conv2d(TF.relu(TF.conv2d(x, w1, padding=1)), w2, stride=2)
    check_op(ours, theirs, rand((3, 2, 8, 7), seed=15), rand((4, 2, 3, 3), seed=16), rand((5, 4, 3, 3), seed=17),
             device=device, rtol=RTOL, atol=ATOL)


def test_conv2d_empty_batch(device):
    ours, theirs = conv(padding=1)
    check_op(ours, theirs, rand((0, 3, 5, 5), seed=18), rand((2, 3, 3, 3), seed=19), device=device,
             rtol=RTOL, atol=ATOL, gradcheck=False)


def test_conv2d_float32_lenet_sizes(device):
    ours, theirs = conv(padding=2)
    x, w, b = rand((64, 1, 28, 28), np.float32, 20), rand((6, 1, 5, 5), np.float32, 21), rand((6,), np.float32, 22)
    out = check_op(ours, theirs, x, w, b, device=device, rtol=1e-4, atol=1e-4)
    assert out.dtype == tl.float32
    ours, theirs = conv()
    check_op(ours, theirs, rand((64, 6, 14, 14), np.float32, 23), rand((16, 6, 5, 5), np.float32, 24),
             rand((16,), np.float32, 25), device=device, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), g=st.sampled_from([1, 2]), cg=st.integers(1, 2), og=st.integers(1, 2),
       h=st.integers(1, 8), w=st.integers(1, 8), kh=st.integers(1, 3), kw=st.integers(1, 3),
       sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
       ph=st.integers(0, 2), pw=st.integers(0, 2))
def test_conv2d_random_geometry(n, g, cg, og, h, w, kh, kw, sh, sw, dh, dw, ph, pw):
    if dh * (kh - 1) + 1 > h + 2 * ph or dw * (kw - 1) + 1 > w + 2 * pw:
        return
    ours, theirs = conv(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=g)
    check_op(ours, theirs, rand((n, g * cg, h, w), seed=26), rand((g * og, cg, kh, kw), seed=27),
             rand((g * og,), seed=28), rtol=RTOL, atol=ATOL, gradcheck=False)


def test_conv2d_gradcheck_all_inputs(device):
    x = tl.tensor(rand((1, 2, 4, 5), seed=29), device=device, requires_grad=True)
    w = tl.tensor(rand((2, 1, 2, 3), seed=30), device=device, requires_grad=True)
    b = tl.tensor(rand((2,), seed=31), device=device, requires_grad=True)
    assert tl.autograd.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=1, groups=2), (x, w, b))


def test_conv2d_computes_only_needed_gradients(device):
    x = tl.tensor(rand((2, 3, 6, 6), seed=32), device=device)                 # data: no grad
    w = tl.tensor(rand((4, 3, 3, 3), seed=33), device=device, requires_grad=True)
    out = F.conv2d(x, w, padding=1)
    assert out.grad_fn.needs_input_grad == (False, True, False)
    assert not hasattr(out.grad_fn, "w3")                  # W is saved only to compute dx
    out.backward(tl.ones(*out.shape, dtype=tl.float64, device=device))
    assert x.grad is None and w.grad is not None


def test_conv2d_gradients_accumulate(device):
    x = tl.tensor(rand((2, 2, 5, 5), seed=34), device=device, requires_grad=True)
    w = tl.tensor(rand((3, 2, 3, 3), seed=35), device=device, requires_grad=True)
    F.conv2d(x, w, padding=1).sum().backward()
    first = host(x.grad).copy(), host(w.grad).copy()
    F.conv2d(x, w, padding=1).sum().backward()
    np.testing.assert_allclose(host(x.grad), 2 * first[0], rtol=1e-12)
    np.testing.assert_allclose(host(w.grad), 2 * first[1], rtol=1e-12)


# --- meta -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("xs,ws,kw", CASES + [((3, 9, 8), (6, 3, 2, 3), dict(padding="same", groups=1))],
                         ids=[str(i) for i in range(len(CASES) + 1)])
def test_conv2d_meta_shapes_match_cpu(xs, ws, kw):
    want = F.conv2d(tl.ones(*xs), tl.ones(*ws), tl.ones(ws[0]), **kw)
    x = tl.empty(*xs, device="meta", requires_grad=True)
    w = tl.empty(*ws, device="meta", requires_grad=True)
    b = tl.empty(ws[0], device="meta", requires_grad=True)
    got = F.conv2d(x, w, b, **kw)
    assert isinstance(got.array, MetaArray) and got.shape == want.shape and got.dtype == tl.float32
    got.backward(tl.empty(*got.shape, device="meta"))
    assert x.grad.shape == xs and w.grad.shape == ws and b.grad.shape == (ws[0],)
    assert isinstance(w.grad.array, MetaArray)


# --- errors -----------------------------------------------------------------------------------------
def test_conv2d_channel_mismatch_names_shapes():
    with pytest.raises(tl.ShapeError, match=r"conv2d.*\(4, 3, 3, 3\).*3 channels.*\(2, 5, 6, 6\)"):
        F.conv2d(tl.ones(2, 5, 6, 6), tl.ones(4, 3, 3, 3))
    with pytest.raises(tl.ShapeError, match=r"conv2d.*groups=2.*6 channels.*\(1, 4, 6, 6\) with 4 channels"):
        F.conv2d(tl.ones(1, 4, 6, 6), tl.ones(4, 3, 3, 3), groups=2)


def test_conv2d_groups_must_divide_channels():
    with pytest.raises(tl.ShapeError, match=r"conv2d: out_channels=5.*not divisible by groups=2"):
        F.conv2d(tl.ones(1, 4, 6, 6), tl.ones(5, 2, 3, 3), groups=2)
    with pytest.raises(tl.ShapeError, match=r"conv2d: in_channels=3.*not divisible by groups=2"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="conv2d: groups must be a positive int"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 3, 3, 3), groups=0)


def test_conv2d_rank_errors():
    with pytest.raises(tl.ShapeError, match=r"conv2d: expected a 3-D .* or 4-D .* got shape \(3, 6\)"):
        F.conv2d(tl.ones(3, 6), tl.ones(4, 3, 3, 3))
    with pytest.raises(tl.ShapeError, match=r"conv2d: expected a 4-D weight.*got shape \(4, 3, 3\)"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 3, 3))


def test_conv2d_kernel_larger_than_padded_input():
    with pytest.raises(tl.ShapeError, match=r"conv2d: the kernel \(5x5.*larger than the padded input \(4x4\).*"
                                            r"\(1, 3, 2, 2\)"):
        F.conv2d(tl.ones(1, 3, 2, 2), tl.ones(4, 3, 5, 5), padding=1)
    with pytest.raises(tl.ShapeError, match=r"conv2d: the kernel \(3x3, 5x5 with dilation"):
        F.conv2d(tl.ones(1, 3, 4, 4), tl.ones(4, 3, 3, 3), dilation=2)


def test_conv2d_bias_and_argument_errors():
    with pytest.raises(tl.ShapeError, match=r"conv2d: expected bias of shape \(4,\).*got \(3,\)"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 3, 3, 3), tl.ones(3))
    with pytest.raises(ValueError, match="conv2d: padding='same' is not supported for strided"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 3, 3, 3), padding="same", stride=2)
    with pytest.raises(ValueError, match="conv2d: padding must be"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 3, 3, 3), padding="full")
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 3, 3, 3), stride=(1, 2, 3))
    with pytest.raises(ValueError, match="conv2d: stride and dilation must be positive"):
        F.conv2d(tl.ones(1, 3, 6, 6), tl.ones(4, 3, 3, 3), stride=0)


def test_conv2d_dtype_errors():
    with pytest.raises(TypeError, match="conv2d: the input is float64 but the weight is float32"):
        F.conv2d(tl.ones(1, 3, 6, 6, dtype=tl.float64), tl.ones(4, 3, 3, 3))
    with pytest.raises(TypeError, match="conv2d: the input is int64.*floating-point"):
        F.conv2d(tl.ones(1, 3, 6, 6, dtype=tl.int64), tl.ones(4, 3, 3, 3))


def test_conv2d_long_skinny_products_go_in_blocks_and_match_torch():
    """A first conv layer (1 in-channel, 5x5, 6 out) over 9 * 32 * 32 = 9216 > fast.tricks.LONG positions:
    its three products are computed in blocks (fast.tricks.matmul); values and gradients equal PyTorch's."""
    from tinylazy.fast import tricks
    x, w, b = rand((9, 1, 32, 32), seed=1), rand((6, 1, 5, 5), seed=2), rand((6,), seed=3)
    assert 9 * 32 * 32 > tricks.LONG and 6 * 25 <= tricks.SMALL
    ts = [tl.tensor(a, requires_grad=True) for a in (x, w, b)]
    rs = [th.tensor(a, requires_grad=True) for a in (x, w, b)]
    out, ref = F.conv2d(*ts, padding=2), TF.conv2d(*rs, padding=2)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rand(tuple(ref.shape), seed=4)
    out.backward(tl.tensor(g))
    ref.backward(th.from_numpy(g))
    for t, r in zip(ts, rs):
        np.testing.assert_allclose(host(t.grad), r.grad.numpy(), rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("m,k,n", [(6, 25, 9000), (6, 9000, 25), (25, 6, 8193), (16, 25, 9000), (3, 4, 5)])
def test_blocked_matmul_equals_one_call(m, k, n):
    from tinylazy.fast import tricks
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(tricks.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tricks.matmul(a, b.T.copy().T), a @ b, rtol=1e-12, atol=1e-12)   # strided
