"""Shared checks: run a tinylazy op and the same PyTorch op on the same inputs, compare the forward
result and the gradients, and run a float64 finite-difference gradcheck."""
import numpy as np
import pytest

import tinylazy as tl


def torch():
    return pytest.importorskip("torch")


def rand(shape, dtype=np.float64, seed=0, low=-1.0, high=1.0):
    return np.asarray(np.random.default_rng(seed).uniform(low, high, size=shape), dtype=dtype)


def noncontiguous(array):
    """The same values as `array` in a non-contiguous view (every other element of a wider buffer)."""
    if array.ndim == 0:
        return array
    wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
    view = wide[..., ::2]
    view[...] = array
    assert not view.flags.c_contiguous or array.shape[-1] <= 1
    return view


def to_tl(array, device="cpu", requires_grad=True):
    t = tl.tensor(array, device=device)
    if requires_grad and t.dtype.kind == "f":
        t.requires_grad_(True)
    return t


def to_torch(array, requires_grad=True):
    th = torch()
    t = th.from_numpy(np.array(array))
    if requires_grad and t.is_floating_point():
        t.requires_grad_(True)
    return t


def host(x):
    """A tinylazy tensor, array or number as a host NumPy array."""
    if isinstance(x, tl.Tensor):
        return np.asarray(tl.backend.to_device(x.array, "cpu"))
    if hasattr(x, "detach"):
        return x.detach().numpy()
    return np.asarray(x)


def assert_close(ours, theirs, rtol=1e-9, atol=1e-12, what="value"):
    a, b = host(ours), host(theirs)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch's {b.shape}"
    assert a.dtype == b.dtype or what != "forward", f"{what}: dtype {a.dtype} != torch's {b.dtype}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def check_op(tl_fn, torch_fn, *arrays, device="cpu", rtol=1e-9, atol=1e-12, grad=True, gradcheck=True,
             check_dtype=True):
    """tl_fn(*tensors) vs torch_fn(*torch_tensors) on the same arrays: forward, then gradients of
    sum(out * w) for a random w, then (on small float64 inputs) a finite-difference gradcheck.
    Non-array arguments are passed to both functions as they are."""
    ours = [to_tl(a, device) if isinstance(a, np.ndarray) else a for a in arrays]
    theirs = [to_torch(a) if isinstance(a, np.ndarray) else a for a in arrays]
    out, ref = tl_fn(*ours), torch_fn(*theirs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert_close(o, r, rtol, atol, "forward")
        if check_dtype:
            assert host(o).dtype == host(r).dtype, f"dtype {host(o).dtype} != torch's {host(r).dtype}"
    if not grad:
        return out
    o, r = outs[0], refs[0]
    w = rand(r.shape, np.float64, seed=1).astype(host(r).dtype)
    o.backward(tl.tensor(w, device=device))
    r.backward(to_torch(w, requires_grad=False))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if isinstance(a, tl.Tensor) and a.requires_grad:
            if b.grad is None:
                assert a.grad is None or not host(a.grad).any(), f"input {i}: torch has no grad, ours is nonzero"
            else:
                assert a.grad is not None, f"input {i}: no gradient"
                assert_close(a.grad, b.grad, rtol, atol, f"grad of input {i}")
    if gradcheck and all(a.dtype == np.float64 for a in arrays if isinstance(a, np.ndarray)):
        small = all(a.size <= 64 for a in arrays if isinstance(a, np.ndarray))
        if small:
            fresh = [to_tl(a, device) if isinstance(a, np.ndarray) else a for a in arrays]
            assert tl.autograd.gradcheck(lambda *xs: _first(tl_fn(*xs)), tuple(fresh))
    return out


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out
