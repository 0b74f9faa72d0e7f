"""Type promotion follows PyTorch (torch.result_type): every pair of dtypes and operand kinds (a tensor with
dimensions, a 0-d tensor, a Python bool/int/float, a raw NumPy array) through + - * / // % **, the six
comparisons, maximum, where and cat gives PyTorch's dtype and PyTorch's values; where PyTorch raises,
tinylazy raises too, naming the op. Gradients come back in each input's own dtype."""
import operator

import numpy as np
import pytest

import tinylazy as tl
from helpers import torch

th = torch()

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
FLOATS = ["float16", "float32", "float64"]

# the values each side of an op takes: signed, nonzero divisors on the right, small exponents for **
LEFT = [-3, -1, 0, 1, 2, 7]
RIGHT = [1, 2, 3, -2, 5, -3]
EXPONENT = [0, 1, 2, 3, 1, 2]
SCALARS = {"left": [True, -3, 2.5], "right": [True, 2, -1.5]}

OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
       "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow,
       "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
       "ge": operator.ge}
# the name each op gives in its error messages
OP_NAMES = {"sub": "sub", "floordiv": "floor_divide", "mod": "remainder", "pow": "pow"}


def values(dtype, side, op=None):
    """Six values of `dtype` for one side of `op` (no zero divisor, no negative exponent)."""
    v = np.array(EXPONENT if (side == "right" and op == "pow") else LEFT if side == "left" else RIGHT)
    if dtype == "bool":
        return v != 0 if side == "left" else np.ones(6, bool)
    return (np.abs(v) if dtype == "uint8" else v).astype(dtype)


def specs(side, scalars=True):
    """The operands one side may take: (kind, dtype or Python value)."""
    out = [("tensor", d) for d in DTYPES] + [("0-d", d) for d in DTYPES]
    return out + [("scalar", s) for s in SCALARS[side]] if scalars else out


def make(spec, side, op, device):
    """(tinylazy operand, torch operand) for one spec."""
    kind, what = spec
    if kind == "scalar":
        return what, what
    v = values(what, side, op)
    v = v if kind == "tensor" else np.array(v[0 if side == "left" else 3])
    return tl.tensor(v, device=device), th.from_numpy(np.array(v))


def name(spec):
    kind, what = spec
    return f"{type(what).__name__} {what!r}" if kind == "scalar" else f"{kind} {what}"


def torch_dtype_name(t):
    return str(t.dtype).replace("torch.", "")


RTOL = {"float16": 2e-3, "float32": 1e-6, "float64": 1e-12}


def compare(ours, theirs, what, rtol=None):
    """An error message when `ours` (a tinylazy tensor) differs from `theirs` (torch) in dtype or values
    (floats within `rtol`, by default that of their dtype)."""
    if str(ours.dtype) != torch_dtype_name(theirs):
        return f"{what}: dtype {ours.dtype}, torch {theirs.dtype}"
    a, b = tl.backend.to_device(ours.array, "cpu"), theirs.numpy()
    if a.shape != b.shape:
        return f"{what}: shape {a.shape}, torch {b.shape}"
    rtol = RTOL.get(str(ours.dtype), 0) if rtol is None else rtol
    if not np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=0, equal_nan=True):
        return f"{what}: values {a.tolist()}, torch {b.tolist()}"
    return None


def run_both(ours_fn, theirs_fn, what, op_name=None):
    """Run both sides; an error message when they disagree (or when tinylazy's error does not name the op)."""
    try:
        theirs = theirs_fn()
    except Exception as e:                                      # torch refuses: tinylazy must refuse too
        try:
            ours_fn()
        except (TypeError, RuntimeError, ValueError) as ours_error:
            if op_name and not str(ours_error).startswith(op_name):
                return f"{what}: the error does not name {op_name}: {ours_error}"
            return None
        return f"{what}: torch raises ({type(e).__name__}: {str(e)[:60]}), tinylazy does not"
    try:
        ours = ours_fn()
    except Exception as e:
        return f"{what}: tinylazy raises {type(e).__name__}: {e}; torch gives {theirs.dtype}"
    return compare(ours, theirs, what)


@pytest.fixture(params=["float32", "float64"])
def default_dtype(request):
    """Both libraries with the same default float dtype; restored afterwards."""
    previous = th.get_default_dtype()
    th.set_default_dtype(getattr(th, request.param))
    tl.set_default_dtype(request.param)
    yield request.param
    th.set_default_dtype(previous)
    tl.set_default_dtype(tl.float32)


# --- the rule itself -------------------------------------------------------------------------------
def test_promote_types_and_can_cast_match_torch():
    for d1 in DTYPES:
        for d2 in DTYPES:
            t1, t2 = getattr(th, d1), getattr(th, d2)
            assert str(tl.promote_types(d1, d2)) == torch_dtype_name(th.empty(0, dtype=th.promote_types(t1, t2))), \
                (d1, d2)
            assert tl.can_cast(d1, d2) == th.can_cast(t1, t2), (d1, d2)


def test_result_type_matches_torch(default_dtype):
    bad = []
    for left in specs("left"):
        for right in specs("right"):
            a, ta = make(left, "left", None, "cpu")
            b, tb = make(right, "right", None, "cpu")
            ours, theirs = tl.result_type(a, b), th.result_type(ta, tb)
            if str(ours) != torch_dtype_name(th.empty(0, dtype=theirs)):
                bad.append(f"{name(left)}, {name(right)}: {ours}, torch {theirs}")
    assert not bad, "\n".join(bad)


def test_examples_from_the_issue():
    assert (tl.ones(2) + tl.ones(2, dtype=tl.int64)).dtype == tl.float32
    assert (tl.arange(3) / tl.arange(1, 4)).dtype == tl.float32
    assert (tl.ones(2, dtype=tl.float16) + tl.ones(2, dtype=tl.int64)).dtype == tl.float16
    assert (tl.ones(2, dtype=tl.uint8) + tl.ones(2, dtype=tl.int8)).dtype == tl.int16
    assert (tl.ones(2) * tl.tensor(2.0, dtype=tl.float64)).dtype == tl.float32      # a 0-d tensor: category only
    assert (tl.ones(2, dtype=tl.int64) * tl.tensor(2.0, dtype=tl.float64)).dtype == tl.float64
    assert (tl.tensor([True]) + 1).dtype == tl.int64
    assert (tl.tensor([0.1]) == tl.tensor(0.1, dtype=tl.float64)).tolist() == [True]   # compared in float32
    assert (th.tensor([0.1]) == th.tensor(0.1, dtype=th.float64)).tolist() == [True]
    tl.set_default_dtype(tl.float64)
    assert (tl.arange(3) * 2.5).dtype == tl.float64 and (tl.arange(3) / 2).dtype == tl.float64
    assert (tl.ones(2, dtype=tl.float32) * 2.5).dtype == tl.float32


# --- every op over every pair ----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("left_kind", ["tensor", "0-d", "scalar"])
def test_binary_ops_match_torch(device, op, left_kind):
    fn, bad = OPS[op], []
    for left in [s for s in specs("left") if s[0] == left_kind]:
        for right in specs("right", scalars=left_kind != "scalar"):
            a, ta = make(left, "left", op, device)
            b, tb = make(right, "right", op, device)
            message = run_both(lambda: fn(a, b), lambda: fn(ta, tb), f"{name(left)} {op} {name(right)}",
                               OP_NAMES.get(op))
            if message:
                bad.append(message)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("default_dtype", ["float64"], indirect=True)
@pytest.mark.parametrize("op", ["add", "truediv", "floordiv", "pow", "lt"])
def test_binary_ops_with_float64_default(default_dtype, op):
    fn, bad = OPS[op], []
    for left in specs("left"):
        for right in specs("right", scalars=left[0] != "scalar"):
            a, ta = make(left, "left", op, "cpu")
            b, tb = make(right, "right", op, "cpu")
            message = run_both(lambda: fn(a, b), lambda: fn(ta, tb), f"{name(left)} {op} {name(right)}",
                               OP_NAMES.get(op))
            if message:
                bad.append(message)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("op", ["add", "mul", "truediv", "pow", "lt", "eq"])
def test_raw_numpy_arrays_count_as_tensors(op):
    """A NumPy array is a tensor of its own ndim, on either side (0-d arrays are 0-d tensors)."""
    fn, bad = OPS[op], []
    for left in specs("left", scalars=False):
        for right in specs("right", scalars=False):
            a, ta = make(left, "left", op, "cpu")
            b, tb = make(right, "right", op, "cpu")
            for ours, what in ((lambda: fn(a, b.array), "tensor, array"), (lambda: fn(a.array, b), "array, tensor")):
                message = run_both(ours, lambda: fn(ta, tb), f"{name(left)} {op} {name(right)} ({what})")
                if message:
                    bad.append(message)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_minimum_match_torch(device, fn):
    bad = []
    for left in specs("left", scalars=False):
        for right in specs("right"):
            a, ta = make(left, "left", None, device)
            b, tb = make(right, "right", None, device)
            if right[0] == "scalar":       # torch.maximum takes tensors only: the scalar as the result dtype
                rt = th.result_type(ta, tb)
                ta, tb = ta.to(rt), th.tensor(tb, dtype=rt)
            message = run_both(lambda: getattr(tl, fn)(a, b), lambda: getattr(th, fn)(ta, tb),
                               f"{fn}({name(left)}, {name(right)})")
            if message:
                bad.append(message)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


def test_where_promotes_its_two_values(device, default_dtype):
    condition = np.array([True, False, True, False, False, True])
    cond, tcond = tl.tensor(condition, device=device), th.from_numpy(condition)
    bad = []
    for x in specs("left"):
        for y in specs("right"):
            a, ta = make(x, "left", None, device)
            b, tb = make(y, "right", None, device)
            message = run_both(lambda: tl.where(cond, a, b), lambda: th.where(tcond, ta, tb),
                               f"where(cond, {name(x)}, {name(y)})")
            if message:
                bad.append(message)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


def test_cat_and_stack_promote_across_inputs(device):
    bad = []
    for d1 in DTYPES:
        for d2 in DTYPES:
            a, ta = make(("tensor", d1), "left", None, device)
            b, tb = make(("tensor", d2), "right", None, device)
            c, tc = make(("tensor", d1), "right", None, device)
            for what, ours, theirs in (
                    ("cat", lambda: tl.cat([a, b]), lambda: th.cat([ta, tb])),
                    ("cat of three", lambda: tl.cat([a, c, b]), lambda: th.cat([ta, tc, tb])),
                    ("stack", lambda: tl.stack([a, b]), lambda: th.stack([ta, tb])),
                    ("stack 0-d", lambda: tl.stack([a[0], b[3]]), lambda: th.stack([ta[0], tb[3]]))):
                message = run_both(ours, theirs, f"{what} {d1}, {d2}")
                if message:
                    bad.append(message)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


def test_clamp_promotes_with_its_bounds():
    x = tl.arange(5)
    assert tl.clamp(x, 1.5).dtype == tl.float32 and tl.clamp(x, 1.5).tolist() == [1.5, 1.5, 2, 3, 4]
    assert tl.clamp(x, 1, 3).dtype == tl.int64
    assert tl.clamp(tl.ones(2, dtype=tl.float16), 0.5).dtype == tl.float16


# --- division, powers, errors ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES[1:6])
def test_integer_true_division_and_trunc(dtype):
    a, b = values(dtype, "left"), values(dtype, "right")
    assert (tl.tensor(a) / tl.tensor(b)).dtype == tl.float32
    assert (tl.tensor(a) / tl.tensor(b[3])).dtype == tl.float32               # an int 0-d divisor
    assert (tl.tensor(a) / tl.tensor(2.0, dtype=tl.float64)).dtype == tl.float64
    for mode in ("trunc", "floor"):
        ours = tl.div(tl.tensor(a), tl.tensor(b), rounding_mode=mode)
        assert compare(ours, th.div(th.from_numpy(a), th.from_numpy(b), rounding_mode=mode), mode) is None


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_integer_powers_with_negative_exponents(dtype):
    base = np.array([0, 1, -1, 2, -2, 3, -1, 1], dtype)
    exponent = np.array([-1, -1, -1, -2, -2, -3, -2, -5], dtype)
    ours = tl.tensor(base) ** tl.tensor(exponent)                        # PyTorch: 1, +-1 or 0, no error
    assert compare(ours, th.from_numpy(base) ** th.from_numpy(exponent), "int ** negative tensor") is None
    assert compare(2 ** tl.tensor(exponent), 2 ** th.from_numpy(exponent), "2 ** negative tensor") is None
    with pytest.raises(RuntimeError, match="pow: integers to negative integer powers are not allowed"):
        tl.tensor(base) ** -1
    with pytest.raises(RuntimeError):
        th.from_numpy(base) ** -1


def test_errors_where_torch_raises():
    b = tl.tensor([True, False])
    with pytest.raises(RuntimeError, match="sub: .*bool"):
        b - b
    with pytest.raises(RuntimeError, match="sub: .*bool"):
        tl.ones(2) - True
    for fn, op in ((operator.floordiv, "floor_divide"), (operator.mod, "remainder"), (operator.pow, "pow")):
        with pytest.raises(TypeError, match=f"{op}: .*bool"):
            fn(b, b)
    with pytest.raises(TypeError, match="add: alpha=0.5 is a float but both operands are integer"):
        tl.add(tl.arange(2), tl.arange(2), alpha=0.5)


def test_inplace_refuses_a_result_of_a_higher_category():
    i = tl.arange(3)
    with pytest.raises(RuntimeError, match="float32 can't be cast to the tensor's dtype int64"):
        i += 1.5
    with pytest.raises(RuntimeError, match="can't be cast"):
        i /= 2
    assert i.tolist() == [0, 1, 2]
    f = tl.ones(2, dtype=tl.float16)
    f += tl.ones(2, dtype=tl.float64)                 # the same category: kept float16, as in PyTorch
    assert f.dtype == tl.float16 and f.tolist() == [2, 2]


def test_python_ints_wrap_into_the_integer_dtype_as_in_torch():
    for dtype, value in (("int8", 1000), ("uint8", -1), ("uint8", 256), ("int16", -40000)):
        x = np.array([0, 1, 100], dtype)
        for fn in (operator.add, operator.eq, operator.lt):
            assert compare(fn(tl.tensor(x), value), fn(th.from_numpy(x), value), f"{dtype} {fn} {value}") is None
    with pytest.raises(OverflowError):
        tl.arange(2) + 2 ** 70


# --- gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "pow", "maximum", "where", "cat"])
def test_gradients_come_back_in_each_inputs_dtype(op):
    cond = np.array([True, False, True])
    bad = []
    for d1 in FLOATS:
        for d2 in FLOATS:
            for shape2 in ((3,), ()):
                x = np.array([0.5, 1.5, 2.0], d1)
                y = np.array([1.25, 0.75, 2.0], d2) if shape2 else np.array(1.5, d2)
                a, b = tl.tensor(x, requires_grad=True), tl.tensor(y, requires_grad=True)
                ta, tb = th.tensor(x, requires_grad=True), th.tensor(y, requires_grad=True)
                if op == "where":
                    out, tout = tl.where(tl.tensor(cond), a, b), th.where(th.from_numpy(cond), ta, tb)
                elif op == "cat":
                    out, tout = tl.cat([a, b.reshape(-1)]), th.cat([ta, tb.reshape(-1)])
                elif op == "maximum":
                    out, tout = tl.maximum(a, b), th.maximum(ta, tb)
                else:
                    out, tout = OPS[op](a, b), OPS[op](ta, tb)
                out.sum().backward()
                tout.sum().backward()
                what = f"{op}({d1} tensor, {d2} {'tensor' if shape2 else '0-d'})"
                for ours, theirs, w in ((out, tout, "output"), (a.grad, ta.grad, "grad a"), (b.grad, tb.grad, "grad b")):
                    # (a gradient is computed in the output's dtype, then cast to its input's)
                    message = compare(ours, theirs.detach(), f"{what} {w}", rtol=RTOL[str(out.dtype)])
                    if message:
                        bad.append(message)
    assert not bad, "\n".join(bad)


def test_gradcheck_through_the_promoting_cast():
    x = tl.tensor(np.array([0.5, -1.5, 2.0]), requires_grad=True)
    y = tl.tensor(np.array(1.5, np.float64), requires_grad=True)          # a 0-d float64 ...
    i = tl.tensor([1, 2, 3])                                               # ... and an int tensor
    assert tl.autograd.gradcheck(lambda x, y: (x * i + y) / i, (x, y))
    assert tl.autograd.gradcheck(lambda x: tl.where(x > 0, x * 2.5, i), (x,))
    assert tl.autograd.gradcheck(lambda x: tl.cat([x, i]) ** 2, (x,))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("op", ["add", "truediv", "pow", "lt"])
def test_meta_tensors_promote_like_cpu(op):
    fn, bad = OPS[op], []
    for left in specs("left", scalars=False):
        for right in specs("right"):
            a, _ = make(left, "left", op, "cpu")
            b, _ = make(right, "right", op, "cpu")
            try:
                want = fn(a, b).dtype
            except (TypeError, RuntimeError):
                continue
            meta_a = tl.empty(a.shape, dtype=a.dtype, device="meta")
            meta_b = b if right[0] == "scalar" else tl.empty(b.shape, dtype=b.dtype, device="meta")
            got = fn(meta_a, meta_b)
            if got.dtype != want or got.shape != fn(a, b).shape:
                bad.append(f"{name(left)} {op} {name(right)}: meta {got.dtype}, cpu {want}")
    assert not bad, "\n".join(bad)
