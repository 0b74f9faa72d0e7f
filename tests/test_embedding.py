"""embedding: lookups and gradients equal PyTorch's (repeated indices accumulate, padding_idx rows get no
gradient, scale_grad_by_freq, max_norm), indices of any shape; gradcheck; meta shapes; clear errors."""
import numpy as np
import pytest

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy.meta import MetaArray
from helpers import assert_close, host, rand, torch

th = torch()
TF = th.nn.functional


def compare(device, idx, weight, **kw):
    w = tl.tensor(weight, device=device, requires_grad=True)
    tw = th.tensor(weight, requires_grad=True)
    out = F.embedding(tl.tensor(idx, device=device), w, **kw)
    ref = TF.embedding(th.from_numpy(idx), tw, **kw)
    assert_close(out, ref, 1e-12, 0, "forward")
    g = rand(ref.shape, seed=1)
    out.backward(tl.tensor(g, device=device))
    ref.backward(th.from_numpy(g))
    assert_close(w.grad, tw.grad, 1e-12, 1e-15, "grad of weight")
    assert_close(w, tw.detach(), 1e-12, 0, "weight after the call")
    return out, w


@pytest.mark.parametrize("idx", [np.array([[1, 2, 2], [6, 0, 1]]), np.array([3, 3, 3, 3]), np.array(4),
                                 np.zeros((2, 0), np.int64), np.arange(7).reshape(7, 1, 1),
                                 np.array([5, 1, 5], np.int32)], ids=["2d", "repeated", "scalar", "empty",
                                                                      "3d", "int32"])
def test_embedding_matches_torch(device, idx):
    out, w = compare(device, idx, rand((7, 3), seed=2))
    assert out.shape == idx.shape + (3,)


@pytest.mark.parametrize("padding_idx", [2, -1, 0])
def test_embedding_padding_idx_gets_no_gradient(device, padding_idx):
    idx = np.array([[1, 2, 2], [6, 0, 1]])
    _, w = compare(device, idx, rand((7, 3), seed=3), padding_idx=padding_idx)
    assert not host(w.grad)[padding_idx].any()


def test_embedding_scale_grad_by_freq_and_max_norm(device):
    idx = np.array([[1, 2, 2], [2, 0, 1]])
    compare(device, idx, rand((5, 4), seed=4), scale_grad_by_freq=True)
    compare(device, idx, rand((5, 4), seed=5) * 3, max_norm=1.0)
    compare(device, idx, rand((5, 4), seed=6) * 3, max_norm=0.5, norm_type=1.0, padding_idx=0)


def test_embedding_float32_and_gradcheck(device):
    w = tl.tensor(rand((10, 8), np.float32, 7), device=device, requires_grad=True)
    out = F.embedding(tl.tensor(np.array([[1, 9], [9, 9]]), device=device), w)
    out.sum().backward()
    assert out.dtype == tl.float32 and w.grad.dtype == tl.float32
    np.testing.assert_allclose(host(w.grad)[9], 3.0)
    w64 = tl.tensor(rand((4, 2), seed=8), device=device, requires_grad=True)
    idx = tl.tensor(np.array([0, 3, 3, 1]), device=device)
    assert tl.autograd.gradcheck(lambda w: F.embedding(idx, w), (w64,))


def test_embedding_meta_shapes():
    w = tl.empty(10, 4, device="meta", requires_grad=True)
    idx = tl.empty(2, 5, dtype=tl.int64, device="meta")
    out = F.embedding(idx, w)
    assert isinstance(out.array, MetaArray) and out.shape == (2, 5, 4) and out.dtype == tl.float32
    out.backward(tl.empty(2, 5, 4, device="meta"))
    assert isinstance(w.grad.array, MetaArray) and w.grad.shape == (10, 4)


def test_embedding_errors():
    w = tl.zeros(7, 3)
    with pytest.raises(IndexError, match=r"embedding: index 7 is out of range for an embedding table of size 7"):
        F.embedding(tl.tensor([1, 7]), w)
    with pytest.raises(IndexError, match=r"embedding: index -1 is out of range .* size 7 .*0\.\.6"):
        F.embedding(tl.tensor([-1, 2]), w)
    with pytest.raises(IndexError, match=r"embedding: padding_idx=7 is out of range for 7 embeddings"):
        F.embedding(tl.tensor([1]), w, padding_idx=7)
    with pytest.raises(TypeError, match="embedding: expected integer indices .* got float32"):
        F.embedding(tl.tensor([1.0]), w)
    with pytest.raises(tl.ShapeError, match=r"embedding: expected a 2-D weight .* got shape \(7,\)"):
        F.embedding(tl.tensor([1]), tl.zeros(7))
