"""Movement ops (reshape, permute, expand, cat, split, flip, ...): forward and gradients equal PyTorch's,
float64 gradchecks, method forms, edge shapes, non-contiguous inputs, errors, hypothesis-driven
reshape/expand, and the meta device (indexing's too). Indexing itself is tested in test_indexing.py."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinylazy as tl
from tinylazy.meta import MetaArray
from helpers import check_op, rand, torch
from test_reduce import check_noncontiguous

th = torch()
HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def both(fn):
    """The same lambda for tinylazy and torch (method forms are spelled alike)."""
    return fn, fn


# --- reshape / view / flatten / squeeze -----------------------------------------------------------
RESHAPES = [
    ((2, 3, 4), lambda t: t.reshape(6, 4)), ((2, 3, 4), lambda t: t.reshape((4, -1))),
    ((2, 3, 4), lambda t: t.view(-1)), ((2, 3, 4), lambda t: t.view((2, 12))), ((), lambda t: t.reshape(1, 1)),
    ((1,), lambda t: t.view(())), ((0, 3), lambda t: t.reshape(3, 0)), ((0, 3), lambda t: t.view(-1, 3, 1)),
    ((2, 3, 4), lambda t: t.flatten()), ((2, 3, 4), lambda t: t.flatten(1)),
    ((2, 3, 4), lambda t: t.flatten(0, -2)), ((2, 3, 4), lambda t: t.flatten(-1, -1)),
    ((), lambda t: t.flatten()), ((2, 12), lambda t: t.unflatten(1, (3, 4))),
    ((2, 3), lambda t: t.unsqueeze(0)), ((2, 3), lambda t: t.unsqueeze(-1)), ((2, 3), lambda t: t.unsqueeze(1)),
    ((), lambda t: t.unsqueeze(0)), ((1, 3, 1), lambda t: t.squeeze()), ((1, 3, 1), lambda t: t.squeeze(0)),
    ((1, 3, 1), lambda t: t.squeeze(-1)), ((1, 3, 1), lambda t: t.squeeze(1)),
    ((1, 3, 1), lambda t: t.squeeze((0, 2))), ((2, 3), lambda t: t.view_as(t.reshape(3, 2))),
]


@pytest.mark.parametrize("k", range(len(RESHAPES)))
def test_reshape_family(device, k):
    shape, fn = RESHAPES[k]
    out = check_op(fn, fn, rand(shape, seed=k), device=device)
    assert out.shape == fn(th.zeros(shape)).shape


def test_reshape_function_forms(device):
    x = rand((2, 6), seed=1)
    check_op(lambda t: tl.reshape(t, (3, 4)), lambda t: th.reshape(t, (3, 4)), x, device=device)
    check_op(lambda t: tl.flatten(t, 0, 1), lambda t: th.flatten(t, 0, 1), x, device=device)
    check_op(lambda t: tl.squeeze(tl.unsqueeze(t, 1)), lambda t: th.squeeze(th.unsqueeze(t, 1)), x, device=device)


@st.composite
def reshape_case(draw):
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    n = int(np.prod(shape))
    target = list(draw(st.permutations(shape)))
    if target and draw(st.booleans()):                 # merge two neighbours
        i = draw(st.integers(0, len(target) - 1))
        target[i:i + 2] = [int(np.prod(target[i:i + 2]))]
    if n and target and draw(st.booleans()):           # one unknown size
        target[draw(st.integers(0, len(target) - 1))] = -1
    return shape, tuple(target)


@HYPO
@given(case=reshape_case(), noncontig=st.booleans())
def test_reshape_hypothesis(device, case, noncontig):
    shape, target = case
    x = rand(shape, seed=2)
    fn = (lambda t: t.transpose(0, -1).reshape(target)) if noncontig and shape else (lambda t: t.reshape(target))
    check_op(fn, fn, x, device=device, gradcheck=x.size <= 16)


def test_reshape_errors_name_both_shapes(device):
    x = tl.ones(2, 3, device=device)
    with pytest.raises(tl.ShapeError, match=r"reshape: cannot view a tensor of shape \(2, 3\) \(6 elements\) "
                                            r"as shape \(4,\)"):
        x.view(4)
    with pytest.raises(ValueError, match=r"\(-1, -1\)"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match="start_dim"):
        x.flatten(1, 0)
    with pytest.raises(IndexError, match=r"unsqueeze: dimension 3 is out of range.*\[-3, 2\]"):
        x.unsqueeze(3)


# --- permute / transpose --------------------------------------------------------------------------
PERMUTES = [lambda t: t.permute(2, 0, 1), lambda t: t.permute((1, 2, 0)), lambda t: t.permute(-1, 0, -2),
            lambda t: t.transpose(0, 2), lambda t: t.transpose(-1, 1), lambda t: t.T.reshape(-1),
            lambda t: t.mT, lambda t: t.swapaxes(0, 1), lambda t: t.movedim(0, -1),
            lambda t: t[0].t(), lambda t: t.permute(2, 1, 0).contiguous()]


@pytest.mark.filterwarnings("ignore:The use of `x.T`")     # PyTorch deprecates .T beyond 2-D; we still match it
@pytest.mark.parametrize("k", range(len(PERMUTES)))
def test_permute_family(device, k):
    check_op(*both(PERMUTES[k]), rand((2, 3, 4), seed=3), device=device)


def test_permute_function_form_and_errors(device):
    check_op(lambda t: tl.permute(t, (1, 0)), lambda t: th.permute(t, (1, 0)), rand((2, 3)), device=device)
    check_op(lambda t: tl.transpose(t, 0, 1), lambda t: th.transpose(t, 0, 1), rand((2, 3)), device=device)
    x = tl.ones(2, 3, device=device)
    with pytest.raises(ValueError, match=r"permute: dims \(0, 0\) are not a permutation.*\(2, 3\)"):
        x.permute(0, 0)
    with pytest.raises(IndexError, match=r"transpose: dimension 2 is out of range.*\[-2, 1\]"):
        x.transpose(0, 2)
    with pytest.raises(ValueError, match="at most 2 dims"):
        tl.ones(1, 1, 1).t()
    assert x.T.shape == (3, 2) and tl.ones(3).T.shape == (3,)


# --- expand / broadcast_to / repeat ---------------------------------------------------------------
EXPANDS = [((3, 1), (3, 4)), ((3, 1), (2, 3, 5)), ((1,), (0,)), ((), (2, 2)), ((2, 1, 1), (-1, 3, -1)),
           ((1, 3), (4, -1)), ((0, 1), (2, 0, 3))]


@pytest.mark.parametrize("shape,sizes", EXPANDS, ids=str)
def test_expand(device, shape, sizes):
    x = rand(shape, seed=4)
    check_op(lambda t: t.expand(*sizes), lambda t: t.expand(*sizes), x, device=device)
    check_op(lambda t: t.expand(sizes), lambda t: t.expand(sizes), x, device=device)
    if -1 not in sizes:
        check_op(lambda t: tl.broadcast_to(t, sizes), lambda t: th.broadcast_to(t, sizes), x, device=device)
        check_op(lambda t: t.expand_as(tl.zeros(sizes)),
                 lambda t: t.expand_as(th.zeros(sizes)), x, device=device)


@HYPO
@given(data=st.data())
def test_expand_hypothesis(device, data):
    target = tuple(data.draw(st.lists(st.integers(0, 3), min_size=0, max_size=4)))
    k = data.draw(st.integers(0, len(target)))
    shape = tuple(s if data.draw(st.booleans()) else 1 for s in target[k:])
    x = rand(shape, seed=5)
    check_op(*both(lambda t: t.expand(target)), x, device=device, gradcheck=x.size <= 16)


@pytest.mark.parametrize("shape,reps", [((2, 3), (2, 1)), ((2, 3), (1, 1)), ((2, 3), (3, 2, 2)), ((3,), (2, 0)),
                                        ((), (2,)), ((0, 2), (2, 3)), ((1, 2), (2, 1, 3))], ids=str)
def test_repeat(device, shape, reps):
    check_op(*both(lambda t: t.repeat(*reps)), rand(shape, seed=6), device=device)
    check_op(*both(lambda t: t.repeat(reps)), rand(shape, seed=6), device=device)


def test_expand_repeat_errors(device):
    x = tl.ones(2, 3, device=device)
    with pytest.raises(tl.ShapeError, match=r"expand: cannot expand a tensor of shape \(2, 3\) to \(4, 3\)"):
        x.expand(4, 3)
    with pytest.raises(tl.ShapeError, match=r"\(2, 3\) to \(3,\)"):
        x.expand(3)
    with pytest.raises(tl.ShapeError, match=r"repeat: cannot repeat a tensor of shape \(2, 3\) by \(2,\)"):
        x.repeat(2)


# --- cat / stack / split / chunk ------------------------------------------------------------------
@pytest.mark.parametrize("shapes,dim", [([(2, 3), (4, 3)], 0), ([(2, 3), (2, 1), (2, 0)], 1),
                                        ([(2, 3), (2, 2)], -1), ([(1,), (3,)], 0), ([(0, 2), (3, 2)], 0),
                                        ([(2, 2, 1), (2, 2, 3)], -1)], ids=str)
def test_cat(device, shapes, dim):
    arrays = [rand(s, seed=i) for i, s in enumerate(shapes)]
    check_op(lambda *ts: tl.cat(ts, dim), lambda *ts: th.cat(ts, dim), *arrays, device=device)
    check_op(lambda *ts: tl.concat(list(ts), dim=dim), lambda *ts: th.concat(list(ts), dim=dim), *arrays,
             device=device)


def test_numpy_style_axis_aliases(device):
    a, b = rand((2, 3), seed=1), rand((2, 3), seed=2)
    check_op(lambda x, y: tl.cat((x, y), axis=1), lambda x, y: th.cat((x, y), axis=1), a, b, device=device)
    check_op(lambda x, y: tl.stack((x, y), axis=1), lambda x, y: th.stack((x, y), axis=1), a, b, device=device)
    for fn in (lambda t: t.unsqueeze(axis=0), lambda t: t[None].squeeze(axis=0), lambda t: t.chunk(2, axis=1)[1],
               lambda t: t.swapaxes(0, 1), lambda t: t.swapdims(0, 1)):
        check_op(fn, fn, a, device=device)
    idx = np.array([[0, 2], [1, 1]])
    check_op(lambda t: t.gather(axis=1, index=tl.tensor(idx)), lambda t: t.gather(axis=1, index=th.from_numpy(idx)),
             a, device=device)


def test_cat_promotes_dtypes_and_skips_legacy_empty(device):
    a, b = tl.tensor([1.0, 2.0], dtype=tl.float32, device=device), tl.tensor([3.0], dtype=tl.float64, device=device)
    assert tl.cat([a, b]).dtype == tl.float64
    m = rand((2, 3), seed=7)
    check_op(lambda e, t: tl.cat([e, t]), lambda e, t: th.cat([e, t]), np.zeros(0), m, device=device)


@pytest.mark.parametrize("shape,dim", [((2, 3), 0), ((2, 3), 1), ((2, 3), 2), ((2, 3), -1), ((), 0), ((0, 2), 1)],
                         ids=str)
def test_stack(device, shape, dim):
    arrays = [rand(shape, seed=i) for i in range(3)]
    check_op(lambda *ts: tl.stack(ts, dim), lambda *ts: th.stack(ts, dim), *arrays, device=device)


def test_cat_stack_errors_name_the_shapes(device):
    a, b = tl.ones(2, 3, device=device), tl.ones(2, 4, device=device)
    with pytest.raises(tl.ShapeError, match=r"cat: sizes must match except in dim 0: got \(2, 3\) at position 0 "
                                            r"and \(2, 4\) at position 1"):
        tl.cat([a, b])
    with pytest.raises(tl.ShapeError, match=r"stack: .*\(2, 3\) at position 0 and \(2, 4\) at position 1"):
        tl.stack([a, b])
    with pytest.raises(tl.ShapeError, match="0-d"):
        tl.cat([tl.tensor(1.0), tl.tensor(2.0)])
    with pytest.raises(IndexError, match=r"cat: dimension 2 is out of range.*\[-2, 1\]"):
        tl.cat([a, a], 2)
    with pytest.raises(ValueError, match="non-empty"):
        tl.cat([])


SPLITS = [lambda m, t: m.split(t, 2), lambda m, t: m.split(t, 2, 1), lambda m, t: m.split(t, [1, 0, 4], -1),
          lambda m, t: t.split(3, dim=0), lambda m, t: m.chunk(t, 2), lambda m, t: m.chunk(t, 3, 1),
          lambda m, t: t.chunk(4, -1), lambda m, t: t.unbind(1), lambda m, t: m.unbind(t),
          lambda m, t: (t.narrow(1, 1, 3),), lambda m, t: (m.narrow(t, -1, -2, 2),)]


@pytest.mark.parametrize("k", range(len(SPLITS)))
def test_split_chunk_unbind(device, k):
    fn = SPLITS[k]

    def weighted(m):
        return lambda t: m.cat([p.reshape(-1) * (i + 1) for i, p in enumerate(fn(m, t))])
    x = rand((3, 5), seed=8)
    check_op(lambda t: fn(tl, t), lambda t: fn(th, t), x, device=device, grad=False)
    check_op(weighted(tl), weighted(th), x, device=device)


def test_using_one_piece_of_a_split_backpropagates(device):
    x = rand((4, 3), seed=9)
    check_op(lambda t: t.chunk(2)[1] * 3, lambda t: t.chunk(2)[1] * 3, x, device=device)
    check_op(lambda t: t.split(1, 1)[0], lambda t: t.split(1, 1)[0], x, device=device)


def test_split_chunk_edge_cases(device):
    check_op(lambda t: t.chunk(3), lambda t: t.chunk(3), np.zeros(0), device=device, grad=False)
    check_op(lambda t: t.split(2), lambda t: t.split(2), np.zeros(0), device=device, grad=False)
    x = tl.ones(5, device=device)
    with pytest.raises(tl.ShapeError, match=r"split: sections \[2, 2\] must sum to 5"):
        x.split([2, 2])
    with pytest.raises(ValueError, match="chunks must be positive"):
        x.chunk(0)


# --- flip, tril/triu, gather, index_select, masked_fill, nonzero ---------------------------------
OTHERS = [
    lambda m, t: m.flip(t, (0,)), lambda m, t: m.flip(t, (0, -1)), lambda m, t: t.flip(1),
    lambda m, t: m.tril(t), lambda m, t: m.triu(t, 1), lambda m, t: m.tril(t, -1), lambda m, t: t.triu(-2),
    lambda m, t: m.gather(t, 1, m.tensor([[0, 0, 3], [1, 2, 1], [3, 3, 3]])),
    lambda m, t: m.gather(t, 0, m.tensor([[2, 0], [2, 2]])), lambda m, t: t.gather(-1, m.tensor([[1], [0], [0]])),
    lambda m, t: m.index_select(t, 0, m.tensor([2, 0, 2])), lambda m, t: t.index_select(-1, m.tensor([3, 3])),
    lambda m, t: m.index_select(t, 1, m.tensor(np.zeros(0, np.int64))),
    lambda m, t: t.masked_fill(m.tensor([[True, False, False, True]]), -2.0),
    lambda m, t: m.masked_fill(t, t > 0, 0.0), lambda m, t: t.masked_fill(m.tensor([True, False, True])[:, None], 1),
]


@pytest.mark.parametrize("k", range(len(OTHERS)))
def test_other_movement_ops(device, k):
    fn = OTHERS[k]
    check_op(lambda t: fn(tl, t), lambda t: fn(th, t), rand((3, 4), seed=14), device=device)


def test_batched_tril_and_noncontiguous(device):
    check_op(lambda t: tl.triu(t), lambda t: th.triu(t), rand((2, 3, 3), seed=15), device=device)
    check_noncontiguous(lambda t: tl.tril(t), lambda t: th.tril(t), rand((3, 4), seed=16), device)
    check_noncontiguous(lambda t: t.flip(0), lambda t: t.flip(0), rand((3, 4), seed=16), device)
    check_noncontiguous(lambda t: t.reshape(-1), lambda t: t.reshape(-1), rand((3, 4), seed=16), device)
    check_noncontiguous(lambda t: tl.cat([t, t], 1), lambda t: th.cat([t, t], 1), rand((3, 4), seed=16), device)


def test_contiguous(device):
    x = tl.tensor(rand((3, 4)), device=device)
    assert x.contiguous() is x
    y = x.T.contiguous()
    assert y.array.flags.c_contiguous and y.shape == (4, 3)
    check_op(lambda t: t.T.contiguous(), lambda t: t.T.contiguous(), rand((3, 4)), device=device)


# --- meta device ----------------------------------------------------------------------------------
META_CASES = [
    (lambda x: x.view(6, 4), (6, 4)), (lambda x: x.reshape(-1, 2), (12, 2)), (lambda x: x.flatten(1), (2, 12)),
    (lambda x: x.permute(2, 0, 1), (4, 2, 3)), (lambda x: x.transpose(0, 1), (3, 2, 4)), (lambda x: x.mT, (2, 4, 3)),
    (lambda x: x.T, (4, 3, 2)), (lambda x: x.unsqueeze(1), (2, 1, 3, 4)), (lambda x: x[:, :1].squeeze(1), (2, 4)),
    (lambda x: x[:, :1].expand(2, 5, 4), (2, 5, 4)), (lambda x: x.repeat(1, 2, 1, 3), (1, 4, 3, 12)),
    (lambda x: tl.cat([x, x], -1), (2, 3, 8)), (lambda x: tl.stack([x, x], 1), (2, 2, 3, 4)),
    (lambda x: x.split(2, -1)[1], (2, 3, 2)), (lambda x: x.chunk(3, 1)[2], (2, 1, 4)),
    (lambda x: x.contiguous(), (2, 3, 4)), (lambda x: x[0, ..., None], (3, 4, 1)),
    (lambda x: x[tl.tensor([1, 1, 0])], (3, 3, 4)), (lambda x: x[:, [0, 2]], (2, 2, 4)),
    (lambda x: x[:, tl.empty(5, 6, dtype=tl.int64, device="meta")], (2, 5, 6, 4)),
    (lambda x: x.flip(0), (2, 3, 4)), (lambda x: x.tril(), (2, 3, 4)), (lambda x: x.triu(1), (2, 3, 4)),
    (lambda x: x.gather(1, tl.zeros(2, 2, 4, dtype=tl.int64)), (2, 2, 4)),
    (lambda x: x.index_select(2, tl.tensor([0, 0, 1])), (2, 3, 3)),
    (lambda x: x.masked_fill(tl.empty(3, 1, dtype=tl.bool, device="meta"), 0.0), (2, 3, 4)),
    (lambda x: x[tl.tensor([True, False])], (1, 3, 4)),
]


@pytest.mark.parametrize("k", range(len(META_CASES)))
def test_meta_device(k):
    fn, shape = META_CASES[k]
    x = tl.empty(2, 3, 4, device="meta", requires_grad=True)
    out = fn(x)
    assert out.shape == shape and out.dtype == tl.float32 and isinstance(out.array, MetaArray)
    out.sum().backward()
    assert isinstance(x.grad.array, MetaArray) and x.grad.shape == (2, 3, 4)


def test_meta_errors_and_setitem():
    x = tl.empty(2, 3, device="meta")
    x[0] = 1.0
    x[:, 1] = tl.empty(2, device="meta")
    with pytest.raises(tl.ShapeError, match="setitem"):
        x[0] = tl.empty(2, device="meta")
    with pytest.raises(TypeError, match="meta"):
        tl.nonzero(x)
    with pytest.raises(TypeError, match="boolean-mask"):
        x[tl.empty(2, 3, dtype=tl.bool, device="meta")]
    with pytest.raises(tl.ShapeError, match=r"\(2, 3\)"):
        x.view(4)
