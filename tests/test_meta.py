"""The meta device: shapes and dtypes only. Every op returns what it would on cpu, allocating nothing."""
import tracemalloc

import numpy as np
import pytest

import tinylazy as tl
from tinylazy.meta import MetaArray


def meta(*shape, dtype=None):
    return tl.empty(*shape, device="meta", dtype=dtype)


def same_as_cpu(fn, *shapes, dtype=tl.float32):
    """fn on meta tensors has the shape and dtype of fn on cpu tensors of the same shapes."""
    got = fn(*(meta(*s, dtype=dtype) for s in shapes))
    want = fn(*(tl.ones(*s, dtype=dtype) for s in shapes))
    assert isinstance(got.array, MetaArray) and got.device == "meta"
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    return got


@pytest.mark.parametrize("fn", [
    lambda a, b: a + b, lambda a, b: a * b - b, lambda a, b: a / b, lambda a, b: a ** b,
    lambda a, b: tl.maximum(a, b), lambda a, b: tl.where(a > b, a, b), lambda a, b: (a * 2.0).exp() + b.tanh(),
])
@pytest.mark.parametrize("sa,sb", [((2, 3), (3,)), ((4, 1, 5), (2, 1)), ((), (2,)), ((0, 3), (1, 3))])
def test_binary_shapes_and_dtypes_match_cpu(fn, sa, sb):
    same_as_cpu(fn, sa, sb)
    same_as_cpu(fn, sa, sb, dtype=tl.float64)


@pytest.mark.parametrize("fn", [tl.exp, tl.log, tl.sqrt, tl.sigmoid, tl.relu, tl.abs, tl.sin, lambda t: -t,
                                lambda t: t.clamp(0, 1), lambda t: t > 0, lambda t: t.double(), lambda t: t * 2.5])
def test_unary_shapes_and_dtypes_match_cpu(fn):
    same_as_cpu(fn, (3, 4))


def test_int_meta_promotes_like_cpu():
    got = tl.empty(3, dtype=tl.int64, device="meta") * 2.5
    assert got.dtype == tl.float32 and got.shape == (3,)


def test_meta_autograd_tracks_shapes():
    x = tl.empty(4, 5, device="meta", requires_grad=True)
    y = (x * 2.0).tanh()
    y.backward(tl.empty(4, 5, device="meta"))
    assert isinstance(x.grad.array, MetaArray) and x.grad.shape == (4, 5)


def test_meta_has_no_values():
    t = meta(1)
    for get in (t.item, t.tolist, t.numpy, meta(2).tolist):
        with pytest.raises((TypeError, RuntimeError), match="no data"):
            get()


def test_meta_shape_errors_are_raised():
    with pytest.raises(ValueError):
        meta(2, 3) + meta(4)


def test_large_meta_ops_allocate_nothing():
    x = meta(10_000, 10_000)                     # 400 MB if it were real
    tracemalloc.start()
    y = ((x * 2.0 + 1.0).exp() * x).sigmoid()
    z = y > 0.5
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert y.shape == (10_000, 10_000) and z.dtype == tl.bool
    assert peak < 1_000_000, f"meta ops allocated {peak} bytes"


def test_meta_indexing_uses_zero_byte_shadows():
    x = MetaArray((1000, 1000, 10), np.float32)
    idx = MetaArray((50, 7), np.int64)
    tracemalloc.start()
    out = x[idx, 3:9]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (50, 7, 6, 10) and out.dtype == np.float32
    assert peak < 100_000
    with pytest.raises(TypeError, match="boolean-mask"):
        x[MetaArray((1000,), np.bool_)]


def test_meta_numpy_functions():
    a = MetaArray((2, 3, 4), np.float32)
    assert np.sum(a, axis=1).shape == (2, 4) and np.sum(a, axis=(0, 2), keepdims=True).shape == (1, 3, 1)
    assert np.sum(MetaArray((3,), np.bool_)).dtype == np.sum(np.ones(3, bool)).dtype
    assert np.mean(MetaArray((3,), np.int64)).dtype == np.float64
    assert np.argmax(a, axis=-1).shape == (2, 3)
    assert np.concatenate([a, a], axis=1).shape == (2, 6, 4)
    assert np.stack([a, a]).shape == (2, 2, 3, 4)
    assert a.reshape(6, -1).shape == (6, 4) and a.transpose(2, 0, 1).shape == (4, 2, 3)
    assert (a @ MetaArray((4, 5), np.float32)).shape == (2, 3, 5)
    assert [p.shape for p in np.split(a, 3, axis=1)] == [(2, 1, 4)] * 3
    with pytest.raises(ValueError, match="matmul"):
        a @ MetaArray((5, 5), np.float32)
    with pytest.raises(TypeError, match="not supported on the meta device"):
        np.fft.fft(a)
