"""A layer's input may be passed by keyword, with PyTorch's parameter names, also on a lazy layer's first
call (issue 15, item 7; API §6 rule 14)."""
import copy
import inspect

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn

from helpers import torch

LAYERS = [  # (tinylazy layer, input shape, torch class name)
    (lambda: nn.LazyLinear(3), (4, 5), "Linear"),
    (lambda: nn.LazyConv2d(2, 3, padding=1), (2, 3, 5, 5), "Conv2d"),
    (lambda: nn.LazyBatchNorm1d(), (4, 3), "BatchNorm1d"),
    (lambda: nn.LazyBatchNorm2d(), (2, 3, 4, 4), "BatchNorm2d"),
    (lambda: nn.LazyLayerNorm(), (2, 6), "LayerNorm"),
    (lambda: nn.ReLU(), (2, 3), "ReLU"),
    (lambda: nn.GELU(), (2, 3), "GELU"),
    (lambda: nn.Sigmoid(), (2, 3), "Sigmoid"),
    (lambda: nn.Tanh(), (2, 3), "Tanh"),
    (lambda: nn.Softmax(dim=1), (2, 3), "Softmax"),
    (lambda: nn.LogSoftmax(dim=1), (2, 3), "LogSoftmax"),
    (lambda: nn.Flatten(), (2, 3, 4), "Flatten"),
    (lambda: nn.Unflatten(1, (2, 2)), (3, 4), "Unflatten"),
    (lambda: nn.Identity(), (2, 3), "Identity"),
    (lambda: nn.Dropout(0.5), (2, 3), "Dropout"),
    (lambda: nn.MaxPool2d(2), (1, 2, 4, 4), "MaxPool2d"),
    (lambda: nn.AvgPool2d(2), (1, 2, 4, 4), "AvgPool2d"),
    (lambda: nn.AdaptiveAvgPool2d(1), (1, 2, 4, 4), "AdaptiveAvgPool2d"),
    (lambda: nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2)), (3, 5), "Sequential"),
]


@pytest.mark.parametrize("make, shape, name", LAYERS, ids=[n for _, _, n in LAYERS])
def test_first_call_by_keyword_equals_positional(make, shape, name):
    x = tl.rand(*shape)
    a = make()
    b = copy.deepcopy(a)
    if name == "Dropout":
        a.eval(), b.eval()
    tl.manual_seed(1)                                     # the same draws for both materializations
    out_kw = a(input=x)
    tl.manual_seed(1)
    out_pos = b(x)
    np.testing.assert_array_equal(out_kw.detach().numpy(), out_pos.detach().numpy())
    assert not a.has_uninitialized_params()
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    np.testing.assert_array_equal(a(input=x).detach().numpy(), b(x).detach().numpy())   # later calls too


@pytest.mark.parametrize("make, shape, name", LAYERS + [(lambda: nn.Embedding(5, 2), None, "Embedding")],
                         ids=[n for _, _, n in LAYERS] + ["Embedding"])
def test_forward_parameter_names_are_torchs(make, shape, name):
    th = torch()
    ours = list(inspect.signature(type(make()).forward).parameters)[1]
    theirs = list(inspect.signature(getattr(th.nn, name).forward).parameters)[1]
    assert ours == theirs == "input"


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss"])
def test_loss_parameter_names_are_torchs(name):
    th = torch()
    ours = list(inspect.signature(getattr(nn, name).forward).parameters)[1:]
    theirs = list(inspect.signature(getattr(th.nn, name).forward).parameters)[1:]
    assert ours == theirs == ["input", "target"]
    x, y = tl.rand(3, 4), tl.rand(3, 4)
    if name in ("CrossEntropyLoss", "NLLLoss"):
        y = tl.tensor([0, 3, 1])
    loss = getattr(nn, name)()
    assert float(loss(input=x, target=y)) == float(loss(x, y))


def test_d2l_lazy_batch_norm_by_keyword():
    bn = nn.LazyBatchNorm1d()
    x = tl.rand(8, 3)
    out = bn(input=x)
    assert bn.num_features == 3 and out.shape == (8, 3)
    np.testing.assert_allclose(out.detach().numpy().mean(axis=0), 0, atol=1e-6)


def test_a_wrong_keyword_is_pythons_type_error_and_leaves_the_layer_lazy():
    th = torch()
    lin = nn.LazyLinear(3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        lin(x=tl.rand(2, 4))
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        th.nn.Linear(4, 3)(x=th.rand(2, 4))
    assert lin.weight.is_lazy and lin.in_features is None
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'input'"):
        lin()
    assert lin(input=tl.rand(2, 4)).shape == (2, 3)


def test_keyword_input_to_a_custom_lazy_model():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.LazyLinear(4)

        def forward(self, X, scale=1.0):
            return self.body(input=X) * scale

    net = Net()
    out = net(X=tl.rand(2, 7), scale=2.0)
    assert out.shape == (2, 4) and net.body.in_features == 7
