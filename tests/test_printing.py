"""Printing (API §2): `repr`/`str` of tensors are PyTorch's strings, `tl.set_printoptions`, grad_fn names and
`format(t, spec)`.

Every case builds a tinylazy tensor and a torch tensor from the same NumPy array and compares the two
reprs exactly, with nothing replaced. The one deliberate difference is the dtype's spelling,
`dtype=tl.float64` where PyTorch writes `dtype=torch.float64`: the fixture `torch_dtype_names` sets
tinylazy's prefix to "torch." (`_printing.DTYPE_PREFIX`), so that the strings, and where a long dtype suffix
wraps onto a new line, are comparable byte for byte."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy import nn

from helpers import torch

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def torch_dtype_names(monkeypatch):
    monkeypatch.setattr(tl._printing, "DTYPE_PREFIX", "torch.")


def _torch_repr(t):
    return repr(t)


def _same(array, requires_grad=False):
    """repr of the tinylazy tensor == repr of the torch tensor, both made from `array`."""
    th = torch()
    ours = tl.tensor(array, requires_grad=requires_grad)
    theirs = th.tensor(array, requires_grad=requires_grad)
    assert ours.dtype == np.asarray(array).dtype
    assert repr(ours) == _torch_repr(theirs), f"\nours:  {ours!r}\ntorch: {theirs!r}"
    assert str(ours) == repr(ours)
    return repr(ours)


@pytest.fixture
def options():
    """Print options changed by a test are set in both libraries and restored after it."""
    th = torch()

    def set_both(**kw):
        tl.set_printoptions(**kw)
        th.set_printoptions(**kw)
    yield set_both
    tl.set_printoptions(profile="default")
    th.set_printoptions(profile="default")


# --- values: dtypes, ranks, notation ----------------------------------------------------------------
FLOATS = {
    "0-d": np.float32(math.pi),
    "0-d negative": np.float64(-2.5),
    "0-d whole": np.float32(3.0),
    "0-d zero": np.float32(0.0),
    "0-d nan": np.float32(np.nan),
    "1-d": RNG.standard_normal(5).astype(np.float32),
    "2-d": RNG.standard_normal((3, 4)).astype(np.float32),
    "3-d": RNG.standard_normal((2, 3, 4)).astype(np.float32),
    "4-d": RNG.standard_normal((2, 1, 2, 3)).astype(np.float32),
    "float64": RNG.standard_normal((2, 3)),
    "float16": RNG.standard_normal((2, 3)).astype(np.float16),
    "whole numbers": np.array([1.0, 2.0, -3.0], np.float32),
    "whole numbers 2-d": np.array([[1.0, 20.0], [-300.0, 4.0]]),
    "large whole numbers": np.array([1.0, 2e9], np.float32),
    "whole ratio over 1000": np.array([1.0, 2000.0], np.float32),
    "whole above 1e8": np.array([3e8, 4e8], np.float32),
    "large": np.array([1.5e9, 2.25e10], np.float64),
    "tiny": np.array([1.5e-5, 2.5e-6], np.float32),
    "tiny and normal": np.array([1e-5, 0.5], np.float32),
    "ratio over 1000": np.array([0.5, 1234.5678], np.float32),
    "ratio just under 1000": np.array([1.5, 1400.25], np.float32),
    "all zeros": np.zeros(3, np.float32),
    "negative zero": np.array([-0.0, 1.0], np.float32),
    "negative zero, fractions": np.array([-0.0, 1.5], np.float32),
    "nan inf": np.array([np.nan, np.inf, -np.inf], np.float32),
    "nan with fractions": np.array([np.nan, 1.5, -2.25], np.float32),
    "inf with whole numbers": np.array([np.inf, 1.0, 2.0], np.float32),
    "inf with tiny": np.array([np.inf, 1e-7], np.float64),
    "long row wraps": (RNG.standard_normal(30) * 10).astype(np.float32),
    "wide matrix wraps": RNG.standard_normal((3, 15)).astype(np.float32),
    "float16 large": np.array([60000.0, 0.5], np.float16),
}


@pytest.mark.parametrize("name", FLOATS)
def test_float_repr_is_pytorchs(name):
    _same(FLOATS[name])


INTS = {
    "int64": np.array([1, -20, 300], np.int64),
    "int64 2-d": np.array([[1, 2], [-3, 40]], np.int64),
    "int32": np.array([1, 2], np.int32),
    "int16": np.array([[7]], np.int16),
    "int8": np.array([-128, 127], np.int8),
    "uint8": np.array([0, 255], np.uint8),
    "int 0-d": np.int64(-7),
    "int32 0-d": np.int32(5),
    "bool": np.array([True, False, True]),
    "bool 2-d": np.array([[True], [False]]),
    "bool 0-d": np.bool_(True),
    "int 3-d": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
    "long int row wraps": np.arange(-1000, 1000, 37, dtype=np.int64),
}


@pytest.mark.parametrize("name", INTS)
def test_int_and_bool_repr_is_pytorchs(name):
    _same(INTS[name])


def test_examples_read_as_in_pytorch(monkeypatch):
    monkeypatch.setattr(tl._printing, "DTYPE_PREFIX", "tl.")      # tinylazy's own spelling of dtypes
    assert repr(tl.tensor(math.pi)) == "tensor(3.1416)"
    assert repr(tl.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tl.tensor([1, 2], dtype=tl.int32)) == "tensor([1, 2], dtype=tl.int32)"
    assert repr(tl.tensor([1e-5, 1.0])) == "tensor([1.0000e-05, 1.0000e+00])"
    assert repr(tl.zeros(2, 3)) == "tensor([[0., 0., 0.],\n        [0., 0., 0.]])"
    assert repr(tl.zeros(2, 1, 1)) == "tensor([[[0.]],\n\n        [[0.]]])"


# --- empty and meta tensors ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape,dtype", [((0,), np.float32), ((0, 3), np.float32), ((0,), np.int64),
                                         ((2, 0), np.float16), ((0, 2, 1), np.bool_), ((0,), np.float64)])
def test_empty_tensors(shape, dtype):
    _same(np.zeros(shape, dtype))


def test_meta_tensors():
    th = torch()
    for shape, dtype in [((2, 3), tl.float32), ((), tl.float64), ((0, 4), tl.int64)]:
        ours = tl.empty(shape, dtype=dtype, device="meta")
        theirs = th.empty(shape, dtype=getattr(th, np.dtype(dtype).name), device="meta")
        assert repr(ours) == _torch_repr(theirs)
    assert repr(tl.empty(2, 3, device="meta")) == "tensor(..., device='meta', size=(2, 3))"


# --- summarization ---------------------------------------------------------------------------------
SUMMARIZED = {
    "1-d 2000 floats": np.arange(2000, dtype=np.float32) / 7,
    "1-d 2000 whole": np.arange(2000, dtype=np.float32),
    "1-d 2000 ints": np.arange(2000, dtype=np.int64),
    "1-d 1001": RNG.standard_normal(1001).astype(np.float32),
    "1-d 1000 not summarized": RNG.standard_normal(1000).astype(np.float32),
    "2-d": RNG.standard_normal((100, 100)).astype(np.float32),
    "2-d short rows": RNG.standard_normal((500, 3)).astype(np.float32),
    "2-d short columns": RNG.standard_normal((3, 500)),
    "3-d": RNG.standard_normal((10, 20, 30)).astype(np.float32),
    "3-d mixed cut": RNG.standard_normal((4, 300, 5)).astype(np.float32),
    "bool": RNG.standard_normal(2000) > 0,
    "sci in the middle only": np.concatenate([np.ones(10), np.full(1000, 1e-9), np.ones(10)]).astype(np.float32),
}


@pytest.mark.parametrize("name", SUMMARIZED)
def test_summarization_is_pytorchs(name):
    _same(SUMMARIZED[name])


def test_summarized_layout():
    text = repr(tl.arange(2000).float())
    assert text == "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n        1.9990e+03])"


# --- set_printoptions ---------------------------------------------------------------------------------
OPTION_SETS = [
    dict(precision=2),
    dict(precision=8),
    dict(sci_mode=True),
    dict(sci_mode=False),
    dict(threshold=5),
    dict(threshold=5, edgeitems=1),
    dict(threshold=5, edgeitems=0),
    dict(edgeitems=0),
    dict(linewidth=40),
    dict(linewidth=5),
    dict(profile="short"),
    dict(profile="full"),
    dict(profile="short", precision=6, sci_mode=True),
]
OPTION_DATA = [
    RNG.standard_normal((4, 6)).astype(np.float32),
    np.array([1e-6, 1.0], np.float32),
    np.array([1.0, 2.0, 3.0], np.float32),
    np.zeros(3, np.float32),
    np.arange(12, dtype=np.int64).reshape(2, 6),
    RNG.standard_normal((3, 4, 5)),
    RNG.standard_normal(1500).astype(np.float32),
    np.float32(2.5),
]


@pytest.mark.parametrize("kw", OPTION_SETS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_set_printoptions_as_pytorch(options, kw):
    options(**kw)
    for array in OPTION_DATA:
        _same(array)


def test_get_printoptions_and_context(options):
    th = torch()
    options(precision=6, linewidth=100, sci_mode=False)
    assert tl.get_printoptions() == th._tensor_str.get_printoptions()
    with tl.printoptions(precision=1):
        assert repr(tl.tensor([1.25, 2.5])) == "tensor([1.2, 2.5])"
    assert tl.get_printoptions()["precision"] == 6
    options()                                        # like PyTorch: sci_mode goes back to None
    assert tl.get_printoptions()["sci_mode"] is None
    with pytest.raises(ValueError, match="profile"):
        tl.set_printoptions(profile="long")


# --- requires_grad, grad_fn, parameters ------------------------------------------------------------
def test_requires_grad_suffix():
    _same(RNG.standard_normal((2, 2)).astype(np.float32), requires_grad=True)
    _same(np.float32(1.5), requires_grad=True)
    # a long last line moves the suffix to its own line, as in PyTorch
    _same(RNG.standard_normal((3, 7)).astype(np.float32), requires_grad=True)
    _same(RNG.standard_normal(2000).astype(np.float32), requires_grad=True)
    _same(RNG.standard_normal(9).astype(np.float64), requires_grad=True)


def _grad_fn_cases(tl_mod, F_mod, x, m, v, img, target):
    """The same expressions in tinylazy and torch (x: 2x3, m: 3x3, v: 3, img: 1x2x4x4, all float64)."""
    return {
        "mul": x * 2, "add": x + x, "sub": x - 1, "div": x / 3, "neg": -x, "pow": x ** 2,
        "exp": x.exp(), "log": (x * x + 1).log(), "sqrt": (x * x).sqrt(), "abs": x.abs(), "tanh": x.tanh(),
        "sigmoid": x.sigmoid(), "relu": x.relu(), "sin": x.sin(), "log1p": (x * x).log1p(),
        "mm": x @ m, "mv": m @ v, "dot": v @ v, "batched": img[0] @ img[0, 0],
        "sum": x.sum(), "sum dim": x.sum(1), "mean": x.mean(), "mean dim": x.mean(0),
        "max dim": x.max(1)[0], "amax": x.amax(1), "cumsum": x.cumsum(1),
        "reshape": x.reshape(3, 2), "view": x.view(6), "flatten": img.flatten(1), "permute": img.permute(0, 2, 3, 1),
        "T": x.T, "expand": v.expand(2, 3), "repeat": v.repeat(2), "flip": x.flip(0),
        "select": x[0], "index": x[[0, 1]], "cat": tl_mod.cat([x, x]), "stack": tl_mod.stack([x, x]),
        "clone": x.clone(), "double": x.float(), "where": tl_mod.where(x > 0, x, x * 0),
        "maximum": tl_mod.maximum(x, x * 2), "clamp": x.clamp(0, 1),
        "softmax": F_mod.softmax(x, 1), "log_softmax": F_mod.log_softmax(x, 1), "gelu": F_mod.gelu(x),
        "linear": F_mod.linear(x, m, v), "mse": F_mod.mse_loss(x, x.detach() * 0),
        "cross_entropy": F_mod.cross_entropy(x, target),
        "conv2d": F_mod.conv2d(img, img[0, :, :3, :3].unsqueeze(0)),
        "max_pool2d": F_mod.max_pool2d(img, 2), "avg_pool2d": F_mod.avg_pool2d(img, 2),
        "layer_norm": F_mod.layer_norm(x, (3,)), "batch_norm": F_mod.batch_norm(img, None, None, training=True),
        "bce": F_mod.binary_cross_entropy_with_logits(x, x.detach().sigmoid()),
    }


def test_grad_fn_names_and_reprs_are_pytorchs():
    th = torch()
    import torch.nn.functional as TF
    arrays = [RNG.standard_normal(s) for s in [(2, 3), (3, 3), (3,), (1, 2, 4, 4)]]
    ours = _grad_fn_cases(tl, F, *[tl.tensor(a, requires_grad=True) for a in arrays], tl.tensor([0, 2]))
    theirs = _grad_fn_cases(th, TF, *[th.tensor(a, requires_grad=True) for a in arrays], th.tensor([0, 2]))
    for name in ours:
        assert repr(ours[name]) == _torch_repr(theirs[name]), name


def test_grad_fn_name_survives_backward_and_custom_functions():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = (x @ x) * 1
    z = x @ x
    z.backward()
    assert repr(z) == "tensor(5., grad_fn=<DotBackward0>)"       # the node's saved arrays are freed
    assert repr(y) == "tensor(5., grad_fn=<MulBackward0>)"

    class Double(tl.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2
    assert repr(Double.apply(x)) == "tensor([2., 4.], grad_fn=<DoubleBackward>)"     # PyTorch's spelling


def test_parameter_repr_is_pytorchs():
    th = torch()
    array = RNG.standard_normal((2, 3)).astype(np.float32)
    assert repr(nn.Parameter(tl.tensor(array))) == repr(th.nn.Parameter(th.tensor(array)))
    assert repr(nn.Parameter(tl.tensor(array), requires_grad=False)) == \
        repr(th.nn.Parameter(th.tensor(array), requires_grad=False))
    assert repr(nn.LazyLinear(4).weight) == "Parameter(shape=(4, ?), lazy)"     # lazy ones keep their own


def test_device_suffix(device):
    th = torch()
    for array in [RNG.standard_normal((3, 4)).astype(np.float32),
                  RNG.standard_normal((40, 50)).astype(np.float32)]:   # summarized on the device, then copied
        ours, theirs = repr(tl.tensor(array, device=device)), repr(th.tensor(array))
        if device == "cpu":
            assert ours == theirs
        else:
            suffix = f"device='{tl.tensor(array, device=device).device}')"
            assert ours in (theirs[:-1] + ", " + suffix, theirs[:-1] + ",\n       " + suffix), ours
    if device != "cpu":
        assert repr(tl.ones(2, device="cuda:0")) == "tensor([1., 1.], device='cuda:0')"
        assert repr(tl.ones(2, device="cuda:0", dtype=tl.int32)) == \
            "tensor([1, 1], device='cuda:0', dtype=torch.int32)"


# --- format ----------------------------------------------------------------------------------------
def test_format_of_one_element_tensors():
    th = torch()
    loss = tl.tensor(0.123456)
    assert f"{loss:.3f}" == "0.123" and f"loss {loss:.2e}" == "loss 1.23e-01"
    assert f"{tl.tensor([2.5]):.1f}" == "2.5" and f"{tl.tensor([[7]]):d}" == "7"   # PyTorch: 0-d only
    assert f"{loss}" == f"{th.tensor(0.123456)}"                     # a 0-d tensor formats as its number
    assert f"{tl.tensor(3)}" == f"{th.tensor(3)}" == "3"
    t = tl.tensor([1.0, 2.0])
    assert f"{t}" == str(t) == format(t, "") == "tensor([1., 2.])"
    assert f"{tl.tensor([2.5])}" == "tensor([2.5000])"
    with pytest.raises(TypeError, match=r"one-element.*\(2,\)"):
        format(t, ".3f")
    with pytest.raises(TypeError, match="meta"):
        format(tl.empty(1, device="meta"), ".3f")
    assert f"{tl.empty(2, device='meta')}" == "tensor(..., device='meta', size=(2,))"
    p = nn.Parameter(tl.tensor(1.5))
    assert f"{p}" == str(p) == "Parameter containing:\ntensor(1.5000, requires_grad=True)"   # as torch
    assert f"{p:.2f}" == "1.50"
    lazy = nn.LazyLinear(3).weight
    assert f"{lazy}" == "Parameter(shape=(3, ?), lazy)"
    with pytest.raises(nn.UninitializedParameterError):
        f"{lazy:.2f}"


# --- property: any small array prints as in PyTorch ---------------------------------------------------
_ELEMENTS = {
    np.float32: st.floats(width=32, allow_nan=True, allow_infinity=True),
    np.float64: st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(-10 ** 6, 10 ** 6).map(float)),
    np.float16: st.floats(width=16, allow_nan=True, allow_infinity=True),
    np.int64: st.integers(-2 ** 63, 2 ** 63 - 1),
    np.int32: st.integers(-2 ** 31, 2 ** 31 - 1),
    np.bool_: st.booleans(),
}


@st.composite
def _arrays(draw):
    dtype = draw(st.sampled_from(list(_ELEMENTS)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))
    return draw(hnp.arrays(dtype, shape, elements=_ELEMENTS[dtype]))


@settings(max_examples=200, deadline=None)
@given(array=_arrays(), precision=st.sampled_from([None, 1, 4, 6]), linewidth=st.sampled_from([None, 30, 80]),
       threshold=st.sampled_from([None, 10]), edgeitems=st.sampled_from([None, 1, 2]),
       sci_mode=st.sampled_from([None, True, False]))
def test_random_arrays_print_as_in_pytorch(array, precision, linewidth, threshold, edgeitems, sci_mode):
    th = torch()
    kw = dict(precision=precision, linewidth=linewidth, threshold=threshold, edgeitems=edgeitems,
              sci_mode=sci_mode)
    try:
        tl.set_printoptions(**kw)
        th.set_printoptions(**kw)
        _same(array)
    finally:
        tl.set_printoptions(profile="default")
        th.set_printoptions(profile="default")
