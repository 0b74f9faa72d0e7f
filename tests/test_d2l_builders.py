"""d2l's "Builders' Guide" chapter (PyTorch tab), run with `torch` replaced by tinylazy: layers and
modules, parameter management, tied parameters, custom initialization, lazy initialization, custom layers,
file I/O and GPUs. The code of each section is kept as the book writes it; where tinylazy must differ, a
comment says why."""
import numpy as np
import pytest

import tinylazy as torch                      # the book's spelling: every `torch.` below is tinylazy
from tinylazy import nn
from tinylazy.nn import functional as F

try:                                          # tl.save / tl.load (API §8), wherever they are exported from yet
    from tinylazy import serialization as _serialization
except ImportError:                           # pragma: no cover
    _serialization = None
save = getattr(torch, "save", None) or getattr(_serialization, "save", None)
load = getattr(torch, "load", None) or getattr(_serialization, "load", None)


# --- 6.1 Layers and Modules ---------------------------------------------------------------------------
def test_layers_and_modules_sequential():
    net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))
    X = torch.rand(2, 20)
    assert net(X).shape == (2, 10)


class MLP(nn.Module):
    def __init__(self):
        # Call the constructor of the parent class nn.Module to perform the necessary initialization
        super().__init__()
        self.hidden = nn.LazyLinear(256)
        self.out = nn.LazyLinear(10)

    # Define the forward propagation of the model, that is, how to return the required model output
    # based on the input X
    def forward(self, X):
        return self.out(F.relu(self.hidden(X)))


class MySequential(nn.Module):
    def __init__(self, *args):
        super().__init__()
        for idx, module in enumerate(args):
            self.add_module(str(idx), module)

    def forward(self, X):
        for module in self.children():
            X = module(X)
        return X


class FixedHiddenMLP(nn.Module):
    def __init__(self):
        super().__init__()
        # Random weight parameters that will not compute gradients and therefore keep constant during training
        self.rand_weight = torch.rand((20, 20))
        self.linear = nn.LazyLinear(20)

    def forward(self, X):
        X = self.linear(X)
        X = F.relu(X @ self.rand_weight + 1)
        # Reuse the fully connected layer. This is equivalent to sharing parameters with two fully connected layers
        X = self.linear(X)
        # Control flow
        while X.abs().sum() > 1:
            X /= 2
        return X.sum()


class NestMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.LazyLinear(64), nn.ReLU(),
                                 nn.LazyLinear(32), nn.ReLU())
        self.linear = nn.LazyLinear(16)

    def forward(self, X):
        return self.linear(self.net(X))


def test_custom_modules():
    X = torch.rand(2, 20)
    net = MLP()
    assert net(X).shape == (2, 10)
    assert [n for n, _ in net.named_parameters()] == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    net = MySequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))
    assert net(X).shape == (2, 10)
    net = FixedHiddenMLP()
    out = net(X)
    assert out.shape == () and abs(out.item()) <= 1
    assert [n for n, _ in net.named_parameters()] == ["linear.weight", "linear.bias"]     # rand_weight is constant
    chimera = nn.Sequential(NestMLP(), nn.LazyLinear(20), FixedHiddenMLP())
    assert chimera(X).shape == ()
    assert chimera[0].net[2].weight.shape == (32, 64) and chimera[1].in_features == 16


# --- 6.2 Parameter Management ------------------------------------------------------------------------
@pytest.fixture
def pm_net():
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(1))
    X = torch.rand(size=(2, 4))
    assert net(X).shape == (2, 1)
    return net


def test_parameter_access(pm_net):
    net = pm_net
    sd = net[2].state_dict()
    assert list(sd) == ["weight", "bias"] and sd["weight"].shape == (1, 8)
    assert type(net[2].bias) is nn.Parameter
    bias = net[2].bias.data                                # a detached Tensor sharing the storage, as in PyTorch
    assert bias.shape == (1,) and type(bias) is torch.Tensor and not bias.requires_grad
    assert net[2].weight.grad == None                      # noqa: E711 (the book's spelling)
    assert [(name, param.shape) for name, param in net.named_parameters()] == [
        ("0.weight", (8, 4)), ("0.bias", (8,)), ("2.weight", (1, 8)), ("2.bias", (1,))]
    assert np.array_equal(net.state_dict()["2.bias"].numpy(), net[2].bias.data.numpy())


def test_tied_parameters():
    # We need to give the shared layer a name so that we can refer to its parameters
    shared = nn.LazyLinear(8)
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(),
                        shared, nn.ReLU(),
                        shared, nn.ReLU(),
                        nn.LazyLinear(1))
    X = torch.rand(size=(2, 4))
    net(X)
    # Check whether the parameters are the same
    assert (net[2].weight.data[0] == net[4].weight.data[0]).all()
    net[2].weight.data[0, 0] = 100
    # Make sure that they are actually the same object rather than just having the same value
    assert (net[2].weight.data[0] == net[4].weight.data[0]).all()
    assert net[4].weight.data[0, 0] == 100


# --- 6.3 Parameter Initialization --------------------------------------------------------------------
def init_normal(module):
    if type(module) == nn.Linear:                          # noqa: E721 (the book's spelling; rule 1 makes it work)
        nn.init.normal_(module.weight, mean=0, std=0.01)
        nn.init.zeros_(module.bias)


def init_constant(module):
    if type(module) == nn.Linear:                          # noqa: E721
        nn.init.constant_(module.weight, 1)
        nn.init.zeros_(module.bias)


def init_xavier(module):
    if type(module) == nn.Linear:                          # noqa: E721
        nn.init.xavier_uniform_(module.weight)


def init_42(module):
    if type(module) == nn.Linear:                          # noqa: E721
        nn.init.constant_(module.weight, 42)


def test_builtin_initialization(pm_net):
    net = pm_net
    net.apply(init_normal)
    assert net[0].weight.data[0].abs().max() < 0.05 and net[0].bias.data[0] == 0
    net.apply(init_constant)
    assert (net[0].weight.data[0] == 1).all() and net[0].bias.data[0] == 0
    net[0].apply(init_xavier)
    net[2].apply(init_42)
    assert net[0].weight.data[0].abs().max() <= np.sqrt(6 / 12)
    assert (net[2].weight.data == 42).all()


def test_initialization_before_the_first_forward_is_deferred():
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(1))
    net.apply(init_constant)                              # tinylazy: works before the sizes are known
    net[2].apply(init_42)
    net(torch.rand(2, 4))
    assert np.all(net[0].weight.array == 1) and np.all(net[2].weight.array == 42) and np.all(net[0].bias.array == 0)


def test_custom_initialization(pm_net, capsys):
    def my_init(module):
        if type(module) == nn.Linear:                      # noqa: E721
            print("Init", *[(name, param.shape) for name, param in module.named_parameters()][0])
            nn.init.uniform_(module.weight, -10, 10)
            module.weight.data *= module.weight.data.abs() >= 5

    net = pm_net
    net.apply(my_init)
    # the book prints "Init weight torch.Size([8, 4])"
    assert capsys.readouterr().out == "Init weight tl.Size([8, 4])\nInit weight tl.Size([1, 8])\n"
    w = net[0].weight[:2]
    assert w.shape == (2, 4)
    values = net[0].weight.array
    assert np.all((values == 0) | (np.abs(values) >= 5))
    net[0].weight.data[:] += 1
    net[0].weight.data[0, 0] = 42
    assert net[0].weight.data[0][0] == 42


# --- 6.4 Lazy Initialization ---------------------------------------------------------------------------
def test_lazy_initialization():
    net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))
    assert repr(net[0].weight) == "Parameter(shape=(256, ?), lazy)"     # PyTorch: <UninitializedParameter>
    X = torch.rand(2, 20)
    net(X)
    assert net[0].weight.shape == (256, 20)


def test_apply_init_as_d2l_adds_it():
    class Module(nn.Module):                               # d2l.Module's relevant part
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))

        def forward(self, X):
            return self.net(X)

    def apply_init(self, inputs, init=None):              # @d2l.add_to_class(d2l.Module)
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)

    model = Module()
    apply_init(model, [torch.rand(2, 20)], init_xavier)
    assert model.net[0].weight.shape == (256, 20) and model.net[2].weight.shape == (10, 256)
    ours = Module()                                        # tinylazy's built-in method does the same
    assert ours.apply_init([torch.rand(2, 20)], init_42) is ours
    assert np.all(ours.net[2].weight.array == 42)


# --- 6.5 Custom Layers -----------------------------------------------------------------------------------
class CenteredLayer(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, X):
        return X - X.mean()


class MyLinear(nn.Module):
    def __init__(self, in_units, units):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_units, units))
        self.bias = nn.Parameter(torch.randn(units,))

    def forward(self, X):
        linear = torch.matmul(X, self.weight.data) + self.bias.data
        return F.relu(linear)


def test_custom_layers():
    layer = CenteredLayer()
    out = layer(torch.tensor([1.0, 2, 3, 4, 5]))
    assert out.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    net = nn.Sequential(nn.LazyLinear(128), CenteredLayer())
    Y = net(torch.rand(4, 8))
    assert abs(Y.mean().item()) < 1e-5
    linear = MyLinear(5, 3)
    assert linear.weight.shape == (5, 3) and repr(linear.weight).startswith("Parameter containing:")
    assert linear(torch.rand(2, 5)).shape == (2, 3)
    net = nn.Sequential(MyLinear(64, 8), MyLinear(8, 1))
    assert net(torch.rand(2, 64)).shape == (2, 1)


# --- 6.6 File I/O ------------------------------------------------------------------------------------------
def test_file_io_of_model_parameters(tmp_path):
    net = MLP()
    X = torch.randn(size=(2, 20))
    Y = net(X)
    path = str(tmp_path / "mlp.params")
    if save is None:
        pytest.skip("tl.save is not written yet")
    save(net.state_dict(), path)                           # the book: torch.save(net.state_dict(), 'mlp.params')
    state = load(path)
    clone = MLP()
    clone.load_state_dict(state)                           # the clone is lazy: loading materializes it (rule 7)
    clone.eval()
    Y_clone = clone(X)
    assert bool((Y_clone == Y).all())


def test_file_io_of_tensors(tmp_path):
    if save is None:
        pytest.skip("tl.save is not written yet")
    x = torch.arange(4)
    save(x, str(tmp_path / "x-file"))
    assert load(str(tmp_path / "x-file")).tolist() == [0, 1, 2, 3]
    y = torch.zeros(4)
    save([x, y], str(tmp_path / "x-files"))
    x2, y2 = load(str(tmp_path / "x-files"))
    assert x2.tolist() == [0, 1, 2, 3] and y2.tolist() == [0.0] * 4
    mydict = {"x": x, "y": y}
    save(mydict, str(tmp_path / "mydict"))
    assert sorted(load(str(tmp_path / "mydict"))) == ["x", "y"]


# --- 6.7 GPUs ----------------------------------------------------------------------------------------------
def test_gpus_section(device):
    def try_gpu(i=0):
        if torch.cuda.device_count() >= i + 1:
            return torch.device(f"cuda:{i}")
        return torch.device("cpu")

    dev = try_gpu() if device != "cpu" else torch.device("cpu")
    X = torch.ones(2, 3, device=dev)
    net = nn.Sequential(nn.LazyLinear(1))
    net = net.to(device=dev)                               # lazy: records the placement
    assert net(X).shape == (2, 1)
    assert net[0].weight.array.__class__ is X.array.__class__ and net[0].weight.device == dev
