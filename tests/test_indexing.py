"""Indexing: getitem (basic and advanced, PyTorch's placement of integer indices), setitem, gather,
masked_fill, nonzero -- forward and gradients equal PyTorch's, float64 gradchecks, errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinylazy as tl
from helpers import check_op, host, rand, torch
from test_reduce import check_noncontiguous

th = torch()
HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def both(fn):
    return fn, fn


# --- getitem --------------------------------------------------------------------------------------
INDICES = {
    "int": lambda m: 1, "neg_int": lambda m: -1, "slice": lambda m: slice(1, None),
    "step": lambda m: (slice(None, None, 2), slice(3, 0, 1)),
    "step3": lambda m: (slice(2, None, 3), slice(0, 4, 3)), "int_slice": lambda m: (0, slice(1, 3)),
    "none": lambda m: (None, 1), "ellipsis": lambda m: (Ellipsis, 2), "ell_none": lambda m: (1, Ellipsis, None),
    "list": lambda m: [2, 0, 2], "tensor": lambda m: m.tensor([[1, 2], [0, 0]]),
    "two_arrays": lambda m: (m.tensor([0, 2, 2]), m.tensor([1, 1, 3])),
    "array_slice": lambda m: (slice(None), m.tensor([3, 3, 0])), "mask_row": lambda m: m.tensor([True, False, True]),
    "mask_full": lambda m: m.tensor(np.arange(12).reshape(3, 4) % 3 == 0),
    "mask_and_int": lambda m: (m.tensor([True, False, True]), 2), "zero_d_tensor": lambda m: m.tensor(1),
    "empty_list": lambda m: m.tensor(np.zeros(0, np.int64)), "empty_slice": lambda m: slice(2, 2),
    "array_none": lambda m: (m.tensor([1, 1]), None, slice(0, 2)),
}


@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(device, name):
    make = INDICES[name]
    check_op(lambda t: t[make(tl)], lambda t: t[make(th)], rand((3, 4), seed=10), device=device)


def test_getitem_repeated_indices_accumulate(device):
    x = rand((3, 2), seed=11)
    out = check_op(lambda t: t[[0, 0, 2, 0]], lambda t: t[[0, 0, 2, 0]], x, device=device)
    assert out.shape == (4, 2)
    t = tl.tensor(x, device=device, requires_grad=True)
    t[tl.tensor([1, 1, 1], device=device)].sum().backward()
    assert host(t.grad).tolist() == [[0, 0], [3, 3], [0, 0]]


def test_getitem_host_index_on_any_device_and_noncontiguous(device):
    x = rand((4, 5), seed=12)
    check_noncontiguous(lambda t: t[np.array([3, 0, 3])], lambda t: t[[3, 0, 3]], x, device)
    check_noncontiguous(lambda t: t[1:, ::2], lambda t: t[1:, ::2], x, device)
    check_noncontiguous(lambda t: t.T[tl.tensor([1, 1])], lambda t: t.T[th.tensor([1, 1])], x, device)


@HYPO
@given(data=st.data())
def test_getitem_hypothesis(device, data):
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    index = []
    for n in shape[:data.draw(st.integers(1, len(shape)))]:
        if data.draw(st.integers(0, 3)) == 0:
            index.append(None)
        kind = data.draw(st.sampled_from(["int", "slice", "array", "ellipsis"]))
        if kind == "int":
            index.append(data.draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            index.append(slice(data.draw(st.integers(-n, n)), data.draw(st.integers(-n, n)),
                               data.draw(st.sampled_from([1, 2, 3]))))
        elif kind == "array":
            index.append(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=3)))
        else:
            index.append(Ellipsis)              # covers this dim and the rest: nothing may follow
            break
    arrays = [i for i in index if isinstance(i, list)]
    if len(arrays) > 1:                                # advanced indices must broadcast together
        k = len(arrays[0])
        index = [i[:1] * k if isinstance(i, list) else i for i in index]
    index = tuple(index)
    x = rand(shape, seed=13)
    check_op(*both(lambda t: t[index]), x, device=device, gradcheck=x.size <= 16)


def test_getitem_errors(device):
    x = tl.ones(2, 3, device=device)
    with pytest.raises(IndexError, match=r"getitem: .*out of bounds.*\(indexing a tensor of shape \(2, 3\)\)"):
        x[5]
    with pytest.raises(IndexError, match="integer or bool"):
        x[tl.tensor([0.5])]
    with pytest.raises(IndexError, match=r"too many indices.*\(2, 3\)"):
        x[0, 0, 0]


# --- setitem --------------------------------------------------------------------------------------
def test_setitem_values(device):
    x = tl.zeros(3, 4, device=device)
    x[0] = 1.0
    x[1, 1:3] = tl.tensor([2.0, 3.0], device=device)
    x[2] = np.arange(4.0)
    x[:, 0] = [7.0, 8.0, 9.0]
    x[x == 3.0] = -1.0
    x[tl.tensor([0, 0], device=device), tl.tensor([3, 3], device=device)] = 5.0
    x[..., -1:] = tl.tensor(6.0)
    assert host(x).tolist() == [[7, 1, 1, 6], [8, 2, -1, 6], [9, 1, 2, 6]]


def test_setitem_requires_no_grad(device):
    w = tl.ones(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="setitem: a leaf tensor that requires grad cannot be changed in place"):
        w[0] = 2.0
    with tl.no_grad():
        w[0] = 2.0
    assert host(w).tolist() == [2, 1, 1]


def test_setitem_refuses_what_it_cannot_record(device):
    w = tl.ones(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="setitem: a tensor that is part of a graph"):
        (w * 2)[1] = 0.0
    y = tl.zeros(3, device=device)
    with pytest.raises(RuntimeError, match=r"setitem: the value requires grad.*tl\.stack"):
        y[0] = w[1] * 2
    y[0] = (w[1] * 2).detach()
    with tl.no_grad():
        y[1] = w[1] * 3
    assert host(y).tolist() == [2, 3, 0] and not y.requires_grad


def test_setitem_errors(device):
    x = tl.zeros(2, 3, device=device)
    with pytest.raises(tl.ShapeError, match=r"setitem: a value of shape \(2,\) cannot be assigned to an indexed "
                                            r"region of shape \(3,\)"):
        x[0] = tl.ones(2, device=device)
    with pytest.raises(RuntimeError, match="setitem: the value is on meta but the tensor is on"):
        x[0] = tl.empty(3, device="meta")
    with pytest.raises(IndexError, match=r"setitem: .*out of bounds"):
        x[4] = 1.0
    with pytest.raises(RuntimeError, match="read-only"):
        x[:1].expand(3, 3)[0, 0] = 1.0


def test_masked_fill_with_tensor_value_gets_gradient(device):
    x, v = rand((2, 3), seed=17), np.array(0.5)
    mask = np.array([[True, False, True], [False, False, True]])
    check_op(lambda t, s: t.masked_fill(tl.tensor(mask, device=device), s),
             lambda t, s: t.masked_fill(th.from_numpy(mask), s), x, v, device=device)
    ints = tl.tensor([1, 2, 3], device=device).masked_fill(tl.tensor([True, False, True], device=device), 1.7)
    assert ints.dtype == tl.int64 and host(ints).tolist() == [1, 2, 1]
    with pytest.raises(TypeError, match="mask must be a bool tensor, got int64"):
        tl.ones(3, device=device).masked_fill(tl.tensor([1, 0, 1], device=device), 0.0)


def test_gather_errors(device):
    x = tl.ones(2, 3, device=device)
    with pytest.raises(tl.ShapeError, match=r"gather: index of shape \(3, 1\) does not fit input of shape \(2, 3\)"):
        x.gather(1, tl.zeros(3, 1, dtype=tl.int64, device=device))
    with pytest.raises(TypeError, match="integer"):
        x.gather(1, tl.zeros(2, 1, device=device))


@pytest.mark.parametrize("as_tuple", [False, True])
@pytest.mark.parametrize("shape", [(3, 4), (5,), ()], ids=str)
def test_nonzero(device, shape, as_tuple):
    x = (rand(shape, seed=18) > 0).astype(np.float64) if shape else np.array(2.0)
    check_op(lambda t: tl.nonzero(t, as_tuple=as_tuple), lambda t: th.nonzero(t, as_tuple=as_tuple), x,
             device=device, grad=False)
    check_op(lambda t: tl.where(t > 0), lambda t: th.where(t > 0), x, device=device, grad=False)
