"""nn.Module (API §5): registration, traversal, state dicts, modes, apply, placement, grads, hooks, repr,
containers, copies."""
import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.scale = nn.Parameter(tl.ones(4))
        self.register_buffer("count", tl.zeros(1))
        self.register_buffer("scratch", tl.zeros(2), persistent=False)
        self.plain = tl.zeros(5)                                  # a plain tensor attribute: not registered

    def forward(self, x):
        return self.lin(x) * self.scale


# --- registration ------------------------------------------------------------------------------------
def test_setattr_registers_parameters_buffers_and_children():
    b = Block()
    assert list(b._parameters) == ["scale"] and list(b._modules) == ["lin"]
    assert list(b._buffers) == ["count", "scratch"]
    assert "plain" not in b._buffers and isinstance(b.plain, tl.Tensor)
    assert [n for n, _ in b.named_parameters()] == ["scale", "lin.weight", "lin.bias"]
    assert [n for n, _ in b.named_buffers()] == ["count", "scratch"]
    assert list(b.state_dict()) == ["scale", "count", "lin.weight", "lin.bias"]   # scratch is not persistent
    b.scale = None
    assert b.scale is None and [n for n, _ in b.named_parameters()] == ["lin.weight", "lin.bias"]
    del b.lin
    assert not hasattr(b, "lin") and list(b.children()) == []
    b.extra = nn.Buffer(tl.ones(2))
    assert "extra" in b._buffers


def test_registration_errors():
    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tl.zeros(1))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Forgot()
    m = nn.Module()
    m.w = nn.Parameter(tl.zeros(1))
    with pytest.raises(TypeError, match="nn.Parameter or None"):
        m.w = tl.zeros(1)
    with pytest.raises(KeyError):
        m.register_parameter("a.b", None)
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("w", tl.zeros(1))
    with pytest.raises(TypeError):
        m.register_buffer("b", [1, 2])
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nothing'"):
        m.nothing
    with pytest.raises(NotImplementedError, match="forward"):
        m(tl.zeros(1))


def test_parameter_basics():
    p = nn.Parameter(tl.randn(3, 2))
    assert p.requires_grad and p.is_leaf and not p.is_lazy and p.partial_shape == (3, 2)
    assert repr(p).startswith("Parameter containing:\ntensor(") and "requires_grad=True" in repr(p)
    assert not nn.Parameter(tl.zeros(2), requires_grad=False).requires_grad
    t = tl.ones(2)
    assert nn.Parameter(t).array is t.array                              # shares memory
    p.array = tl.zeros(3, 2)                                            # a tensor's array is taken
    assert isinstance(p.array, np.ndarray) and p.sum().item() == 0
    assert (p * 2).shape == (3, 2)


# --- traversal ----------------------------------------------------------------------------------------
def test_named_modules_children_and_shared_members_once():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.Sequential(nn.Linear(2, 1)))
    assert [n for n, _ in net.named_modules()] == ["", "0", "1", "3", "3.0"]
    assert [n for n, _ in net.named_children()] == ["0", "1", "3"]
    assert len(list(net.modules())) == 5
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "3.0.weight", "3.0.bias"]
    assert [n for n, _ in net.named_parameters(prefix="net")][0] == "net.0.weight"
    assert list(net.named_parameters(recurse=False)) == []
    assert len(list(net.named_parameters(remove_duplicate=False))) == 6
    assert net.get_submodule("3.0") is net[3][0]


# --- state dicts -----------------------------------------------------------------------------------------
def test_state_dict_values_share_memory_and_load_copies():
    a, b = Block(), Block()
    sd = a.state_dict()
    assert type(sd) is OrderedDict and type(sd["scale"]) is tl.Tensor
    assert sd["lin.weight"].array is a.lin.weight.array
    assert a.state_dict(keep_vars=True)["scale"] is a.scale
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert np.array_equal(b.lin.weight.array, a.lin.weight.array) and b.lin.weight.array is not a.lin.weight.array


def test_load_state_dict_strict_messages():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    sd = net.state_dict()
    del sd["1.bias"]
    sd["2.weight"] = tl.zeros(1)
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert 'Missing key(s) in state_dict: "1.bias"' in msg and 'Unexpected key(s) in state_dict: "2.weight"' in msg
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["1.bias"] and res.unexpected_keys == ["2.weight"]
    sd = net.state_dict()
    sd["0.weight"] = tl.zeros(5, 3)
    with pytest.raises(RuntimeError, match=r"size mismatch for 0\.weight.*\(5, 3\).*\(4, 3\)"):
        net.load_state_dict(sd, strict=False)                          # mis-shaped keys fail even non-strict
    before = net[1].weight.array.copy()
    sd = {k: v.clone() + 1 for k, v in net.state_dict().items()}
    sd["0.weight"] = tl.zeros(5, 3)
    with pytest.raises(RuntimeError):
        net.load_state_dict(sd)
    assert np.array_equal(before, net[1].weight.array)                   # checked before anything changed


# --- train/eval, apply, grads ---------------------------------------------------------------------------
def test_train_eval_and_apply_order():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5)))
    assert net.training and net[1][0].training
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    order = []
    net.apply(lambda m: order.append(type(m).__name__))
    assert order == ["Linear", "Dropout", "Sequential", "Sequential"]   # children first, as PyTorch


def test_zero_grad_and_requires_grad():
    net = nn.Linear(3, 2)
    net(tl.rand(4, 3)).sum().backward()
    assert net.weight.grad is not None
    net.zero_grad(set_to_none=False)
    assert np.all(net.weight.grad.array == 0)
    net.zero_grad()
    assert net.weight.grad is None
    net.requires_grad_(False)
    assert not net.weight.requires_grad and not net(tl.rand(1, 3)).requires_grad


# --- device and dtype --------------------------------------------------------------------------------------
def test_to_float_double_keep_parameter_objects(device):
    net = Block()
    w = net.lin.weight
    net(tl.rand(2, 3)).sum().backward()
    assert net.double() is net and w is net.lin.weight and w.dtype == tl.float64 and w.grad.dtype == tl.float64
    assert net.count.dtype == tl.float64
    net.float()
    assert w.dtype == tl.float32
    net.to(device)
    assert w.device == device and net.count.device == device and w.grad.device == device
    net.to(device=device, dtype=tl.float64)
    assert w.dtype == tl.float64
    net.cpu()
    assert w.device == "cpu"
    with pytest.raises(TypeError):
        net.to(tl.int64)


def test_to_on_lazy_parameters_records_the_placement():
    net = nn.Sequential(nn.LazyLinear(3), nn.LazyBatchNorm1d()).to(tl.float64)
    assert net[0].weight.is_lazy and net[0].weight.dtype == tl.float64
    assert net[1].num_batches_tracked.dtype == tl.int64                  # integer buffers keep their dtype
    net(tl.rand(4, 2, dtype=tl.float64))
    assert net[0].weight.dtype == net[1].running_mean.dtype == tl.float64


# --- hooks ----------------------------------------------------------------------------------------------
def test_forward_hooks_can_replace_inputs_and_outputs():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h2 = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    out = lin(tl.rand(3, 2))
    assert np.allclose(out.array, lin.bias.array) and calls == [(3, 2)]
    h3 = lin.register_forward_hook(lambda m, args, out: out + 1)
    assert np.allclose(lin(tl.rand(1, 2)).array, lin.bias.array + 1)
    for h in (h1, h2, h3):
        h.remove()
    x = tl.rand(1, 2)
    assert np.allclose(lin(x).array, x.array @ lin.weight.array.T + lin.bias.array) and len(calls) == 2


# --- repr ------------------------------------------------------------------------------------------------
def test_repr_matches_pytorch_style():
    net = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Sequential(nn.LazyLinear(10), nn.Dropout(0.1)))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=20, out_features=256, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Linear(in_features=None, out_features=10, bias=True)\n"
        "    (1): Dropout(p=0.1, inplace=False)\n"
        "  )\n"
        ")")
    torch = pytest.importorskip("torch")
    tnet = torch.nn.Sequential(torch.nn.Linear(20, 256), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.BatchNorm2d(6), torch.nn.LayerNorm(4),
                               torch.nn.MaxPool2d(2), torch.nn.Softmax(dim=1), torch.nn.Embedding(10, 3),
                               torch.nn.GELU(), torch.nn.Identity(), torch.nn.Sigmoid(), torch.nn.Dropout(0.1),
                               torch.nn.AvgPool2d(2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.CrossEntropyLoss(),
                               torch.nn.MSELoss(reduction="sum"), torch.nn.Conv2d(4, 6, 3, bias=False, groups=2, stride=2),
                               torch.nn.Tanh(), torch.nn.LogSoftmax(dim=-1), torch.nn.Embedding(5, 2, padding_idx=0),
                               torch.nn.GELU(approximate="tanh"), torch.nn.Unflatten(1, (2, 3)),
                               torch.nn.BatchNorm1d(3, affine=False), torch.nn.LayerNorm(4, bias=False))
    ours = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Flatten(), nn.Conv2d(1, 6, 5, padding=2),
                         nn.BatchNorm2d(6), nn.LayerNorm(4), nn.MaxPool2d(2), nn.Softmax(dim=1), nn.Embedding(10, 3),
                         nn.GELU(), nn.Identity(), nn.Sigmoid(), nn.Dropout(0.1),
                         nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.CrossEntropyLoss(),
                         nn.MSELoss(reduction="sum"), nn.Conv2d(4, 6, 3, bias=False, groups=2, stride=2),
                         nn.Tanh(), nn.LogSoftmax(dim=-1), nn.Embedding(5, 2, padding_idx=0),
                         nn.GELU(approximate="tanh"), nn.Unflatten(1, (2, 3)),
                         nn.BatchNorm1d(3, affine=False), nn.LayerNorm(4, bias=False))
    assert repr(ours) == repr(tnet)


# --- containers ------------------------------------------------------------------------------------------
def test_sequential_indexing_slicing_and_editing():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    net = nn.Sequential(*layers)
    assert len(net) == 3 and list(net) == layers and net[-1] is layers[2]
    head = net[:2]
    assert type(head) is nn.Sequential and len(head) == 2 and head[0] is layers[0]
    assert head(tl.rand(4, 2)).shape == (4, 3)
    with pytest.raises(IndexError):
        net[3]
    net.append(nn.Sigmoid())
    assert len(net) == 4 and list(net._modules) == ["0", "1", "2", "3"]
    del net[1]
    assert list(net._modules) == ["0", "1", "2"] and net[1] is layers[2]
    net.insert(1, nn.Tanh())
    assert type(net[1]) is nn.Tanh and len(net) == 4
    named = nn.Sequential(OrderedDict(hidden=nn.Linear(2, 2), act=nn.ReLU()))
    assert [n for n, _ in named.named_parameters()] == ["hidden.weight", "hidden.bias"]
    assert named(tl.rand(1, 2)).shape == (1, 2)


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    ml.append(nn.ReLU())
    assert len(ml) == 4 and isinstance(ml[1:], nn.ModuleList) and len(ml[1:]) == 3
    assert [n for n, _ in ml.named_parameters()][:2] == ["0.weight", "0.bias"]
    md = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.ReLU()})
    assert list(md) == ["a", "b"] and "a" in md and len(md) == 2 and type(md["b"]) is nn.ReLU
    md["c"] = nn.Tanh()
    assert list(md.keys()) == ["a", "b", "c"] and [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias"]

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.LazyLinear(4), nn.LazyLinear(2)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    h = Holder()
    assert h(tl.rand(3, 5)).shape == (3, 2) and h.layers[0].in_features == 5


# --- copies ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copies_of_materialized_models(clone):
    net = Block()
    net(tl.rand(2, 3)).sum().backward()
    twin = clone(net)
    assert twin.lin.weight is not net.lin.weight and isinstance(twin.lin.weight, nn.Parameter)
    assert np.array_equal(twin.lin.weight.array, net.lin.weight.array)
    assert np.array_equal(twin.lin.weight.grad.array, net.lin.weight.grad.array)
    twin.lin.weight.array[...] = 0
    assert np.any(net.lin.weight.array != 0)
    assert twin.lin.weight.requires_grad and list(twin.state_dict()) == list(net.state_dict())


def test_uninitialized_helpers():
    net = nn.Sequential(nn.Linear(2, 2), nn.LazyLinear(1))
    assert net.has_uninitialized_params() and not net[0].has_uninitialized_params()
    assert net[0].num_parameters() == 6


def test_parameters_and_buffers_stay_the_same_objects_as_plain_attributes():
    """Module keeps parameters and buffers in its __dict__ too (fast `self.weight`): every way of changing
    them keeps the two views in step."""
    import copy
    m = nn.Linear(3, 2)
    assert m.weight is m._parameters["weight"] and m.__dict__["weight"] is m.weight
    new = nn.Parameter(tl.zeros(2, 3))
    m.weight = new
    assert m.weight is new and m._parameters["weight"] is new and list(m.parameters())[0] is new
    m.bias = None
    assert m.bias is None and m._parameters["bias"] is None
    del m.bias
    assert "bias" not in m._parameters and not hasattr(m, "bias")
    m.register_parameter("bias", nn.Parameter(tl.ones(2)))
    assert m.bias is m._parameters["bias"]
    m.register_buffer("scale", tl.ones(2))
    m.scale = tl.full((2,), 3.0)
    assert m.scale is m._buffers["scale"] and m.scale.tolist() == [3.0, 3.0]
    c = copy.deepcopy(m)
    assert c.weight is c._parameters["weight"] and c.weight is not m.weight
    c.load_state_dict(m.state_dict())
    assert c.weight is c._parameters["weight"]
    m.double()
    assert m.weight is new and m.weight.dtype == tl.float64
    with pytest.raises(KeyError, match="already exists"):
        m.register_parameter("scale", nn.Parameter(tl.ones(1)))
    m.plain = 5
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("plain", tl.ones(1))


def test_child_modules_stay_the_same_objects_as_plain_attributes():
    """Child modules live in __dict__ too (Module has no __getattr__): every container edit keeps the
    attributes and `_modules` in step, and a name that is gone is gone from both."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(2, 2)

    net = Net()
    assert "__getattr__" not in vars(nn.Module) and net.body is net._modules["body"] is net.__dict__["body"]
    net.body = None
    assert net.body is None and net._modules["body"] is None and list(net.children()) == []
    net.body = nn.Tanh()
    assert type(net.body) is nn.Tanh and net._modules["body"] is net.body
    del net.body
    assert not hasattr(net, "body") and "body" not in net._modules
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'body'"):
        net.body
    with pytest.raises(KeyError, match="already exists"):       # PyTorch: would shadow the method
        net.add_module("forward", nn.ReLU())
    net.add_module("extra", nn.ReLU())
    assert type(net.extra) is nn.ReLU

    def attrs(m):                                    # every module-valued attribute: a stale one shows
        return {k: v for k, v in vars(m).items() if isinstance(v, nn.Module)}

    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    del seq[0]
    seq.insert(0, nn.Tanh())
    seq.pop(-1)
    assert attrs(seq) == dict(seq._modules) and list(seq._modules) == ["0", "1"] and not hasattr(seq, "2")
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh(), nn.Sigmoid()])
    del ml[0]
    ml.insert(1, nn.GELU())
    assert attrs(ml) == dict(ml._modules) and [type(m) for m in ml] == [nn.Tanh, nn.GELU, nn.Sigmoid]
    md = nn.ModuleDict({"a": nn.ReLU(), "b": nn.Tanh(), "c": nn.Sigmoid()})
    del md["a"]
    md.pop("b")
    assert attrs(md) == {"c": md["c"]} and md.c is md["c"] and not hasattr(md, "a")
    md.clear()
    assert attrs(md) == {} and len(md) == 0
    with pytest.raises(KeyError, match="already exists"):      # as in PyTorch: it would hide md.keys()
        md["keys"] = nn.ReLU()
    assert callable(md.keys) and len(md) == 0
    twin = copy.deepcopy(seq)
    assert twin[0] is twin.__dict__["0"] and twin[0] is not seq[0]
