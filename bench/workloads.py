"""The benchmark workloads, each built three ways -- tinylazy, hand-written NumPy (np_ref.py), PyTorch CPU --
from the same weights and the same data. Shared by the pytest-benchmark suites (bench_*.py), by the
user-regime harness (harness.py: user_regime.py, ab_revision.py) and by compare.py (the interleaved
diagnostic), so all of them time exactly the same code.

A builder returns a dict ``{impl: Case}``. ``case.run(*case.setup())`` is one timed call; `setup` (not
timed) is None for steady-state workloads and builds a fresh lazy model for the first-forward ones.
Every workload also has a ``check_*`` function that asserts the implementations agree (losses, gradients,
updated weights, inferred shapes, batches), so no benchmark times code that computes the wrong thing.
PyTorch is optional: its cases are left out when it is not installed. So is tinylazy, for the same reason:
user_regime.py runs each implementation in its own process, and the NumPy and PyTorch processes block the
import of tinylazy (whose allocator tuning, turned on below as a training script would, is not the peers'
own regime).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                  # np_ref, bench_chain
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tinylazy itself

import np_ref  # noqa: E402

try:
    import tinylazy as tl
    import tinylazy.nn.functional as F  # noqa: F401
    from tinylazy import nn, optim
except ImportError:          # blocked on purpose in user_regime.py's NumPy and PyTorch processes
    tl = F = nn = optim = None
# No allocator setting here: each revision runs as a user's script gets it (since session 8 the first optimizer
# turns tinylazy's host allocator tuning on; TINYLAZY_MALLOC_TUNING=0 turns it off, for every revision since).

try:
    import torch
except ImportError:          # PyTorch is the peer, not a dependency
    torch = None

LR = 0.05
MOMENTUM = dict(lr=0.01, momentum=0.9)   # the SGD-with-momentum workloads (effective step size 0.1)


class Case:
    """One implementation of one workload: `run(*setup())` is the timed call. `probe()`, where given,
    returns the implementation's current parameters as NumPy arrays (for checks after timing)."""
    __slots__ = ("run", "setup", "probe")

    def __init__(self, run, setup=None, probe=None):
        self.run, self.setup, self.probe = run, setup, probe

    def __call__(self):
        return self.run(*self.setup()) if self.setup else self.run()


# --- shared data and weights ----------------------------------------------------------------------
def linear_init(rng, out_f, in_f):
    """PyTorch's default Linear/Conv init range, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weight and bias."""
    bound = 1 / np.sqrt(in_f)
    return (rng.uniform(-bound, bound, (out_f, in_f)).astype(np.float32),
            rng.uniform(-bound, bound, out_f).astype(np.float32))


def mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    return [*linear_init(rng, 256, 784), *linear_init(rng, 10, 256)]


def lenet_params(seed=0):
    rng = np.random.default_rng(seed)
    c1w, c1b = linear_init(rng, 6, 25)
    c2w, c2b = linear_init(rng, 16, 150)
    return [c1w.reshape(6, 1, 5, 5), c1b, c2w.reshape(16, 6, 5, 5), c2b, *linear_init(rng, 120, 400),
            *linear_init(rng, 84, 120), *linear_init(rng, 10, 84)]


def batch(shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32), rng.integers(0, 10, shape[0]).astype(np.int64)


def _arrays(params):
    return [p.detach().numpy() for p in params]


def as_float(loss):
    """A loss as a Python float, whichever implementation returned it."""
    return float(loss.item()) if hasattr(loss, "item") else float(loss)


def load_into(params, arrays):
    """Copy NumPy arrays into a model's parameters (tinylazy or torch), in order."""
    params = list(params)
    assert [tuple(p.shape) for p in params] == [a.shape for a in arrays], "parameter shapes differ"
    for p, a in zip(params, arrays):
        if torch is not None and isinstance(p, torch.Tensor):
            with torch.no_grad():
                p.copy_(torch.from_numpy(a))
        elif hasattr(type(p), "array"):
            p.array = a.copy()
        else:                    # a revision from before the 'array' slot (ab_revision.py --b OLD_REV)
            p.data = a.copy()


# --- models, the same in tinylazy and torch -------------------------------------------------------
def tl_mlp(pkg=tl):
    """The MLP in tinylazy (or in `pkg`, another copy of the package: see ab_revision.py)."""
    return pkg.nn.Sequential(pkg.nn.Linear(784, 256), pkg.nn.ReLU(), pkg.nn.Linear(256, 10))


def torch_mlp():
    tnn = torch.nn
    return tnn.Sequential(tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 10))


def lenet_layers(nn_mod, lazy=False):
    """d2l's LeNet (ReLU + MaxPool), from `nn_mod` = tinylazy.nn or torch.nn; all-lazy with lazy=True."""
    conv = (lambda i, o, **kw: nn_mod.LazyConv2d(o, **kw)) if lazy else nn_mod.Conv2d
    lin = (lambda i, o: nn_mod.LazyLinear(o)) if lazy else nn_mod.Linear
    return nn_mod.Sequential(
        conv(1, 6, kernel_size=5, padding=2), nn_mod.ReLU(), nn_mod.MaxPool2d(2, 2),
        conv(6, 16, kernel_size=5), nn_mod.ReLU(), nn_mod.MaxPool2d(2, 2), nn_mod.Flatten(),
        lin(400, 120), nn_mod.ReLU(), lin(120, 84), nn_mod.ReLU(), lin(84, 10))


def lazy_mlp(nn_mod):
    return nn_mod.Sequential(nn_mod.Flatten(), nn_mod.LazyLinear(256), nn_mod.ReLU(), nn_mod.LazyLinear(10))


# --- train steps (forward, cross-entropy, backward, SGD) -------------------------------------------
def _tl_train_step(net, x, y, pkg=tl, sgd=None, capture=False):
    """One SGD step on (x, y) as a function of nothing. `sgd`: the optimizer's keywords (default lr=LR);
    `capture=True` wraps the step in `pkg.capture` (the recorded-and-replayed step of API.md section 9)."""
    opt = pkg.optim.SGD(net.parameters(), **(sgd or {"lr": LR}))
    X, Y = pkg.from_numpy(x), pkg.from_numpy(y)
    cross_entropy = pkg.nn.functional.cross_entropy

    def train_step(X, Y):
        loss = cross_entropy(net(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    if capture:
        train_step = pkg.capture(train_step)
    return lambda: train_step(X, Y)


def _torch_train_step(net, x, y, sgd=None):
    opt = torch.optim.SGD(net.parameters(), **(sgd or {"lr": LR}))
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        loss = cross_entropy(net(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


def _train_cases(tl_model, torch_model, ref_class, params, x, y, sgd=None, capture=False):
    """{impl: Case} for the libraries present; `capture=True` makes the tinylazy case the captured step."""
    sgd = sgd or {"lr": LR}
    ref = ref_class(params, **sgd)
    cases = {"numpy": Case(lambda: ref.step(x, y), probe=lambda: list(ref.params))}
    if tl is not None:
        net = tl_model()
        load_into(net.parameters(), params)
        cases["tinylazy"] = Case(_tl_train_step(net, x, y, sgd=sgd, capture=capture),
                                 probe=lambda: _arrays(net.parameters()))
    if torch is not None:
        tnet = torch_model()
        load_into(tnet.parameters(), params)
        cases["torch"] = Case(_torch_train_step(tnet, x, y, sgd=sgd),
                              probe=lambda: _arrays(tnet.parameters()))
    return cases


def mlp_step(batch_size, capture=False):
    x, y = batch((batch_size, 784))
    return _train_cases(tl_mlp, torch_mlp, np_ref.MLP, mlp_params(), x, y, capture=capture)


def lenet_step(batch_size, sgd=None, capture=False):
    """LeNet train steps; `sgd=MOMENTUM` for SGD with momentum (the user-regime table's LeNet rows)."""
    x, y = batch((batch_size, 1, 28, 28))
    return _train_cases(lambda: lenet_layers(nn), lambda: lenet_layers(torch.nn), np_ref.LeNet,
                        lenet_params(), x, y, sgd=sgd, capture=capture)


def _check_train(tl_model, torch_model, ref_class, params, x, y, rtol, sgd=None, steps=1):
    """`steps` steps from the same weights: the first loss agrees with the NumPy reference's (and with
    torch's), and so do the weights after the last SGD update (one step checks every gradient; two check
    the momentum buffers too)."""
    sgd = sgd or {"lr": LR}
    ref = ref_class(params, **sgd)
    loss_ref = ref.step(x, y)
    for _ in range(steps - 1):
        ref.step(x, y)
    models = [("tinylazy", tl_model(), _tl_train_step)]
    if torch is not None:
        models.append(("torch", torch_model(), _torch_train_step))
    for name, net, make_step in models:
        load_into(net.parameters(), params)
        plist = list(net.parameters())
        step = make_step(net, x, y, sgd=sgd)
        loss = step().item()
        for _ in range(steps - 1):
            step()
        assert abs(loss - loss_ref) <= rtol * abs(loss_ref), f"{name} loss {loss} != numpy {loss_ref}"
        for k, (p, want) in enumerate(zip(plist, ref.params)):
            got = p.detach().numpy()
            np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6,
                                       err_msg=f"{name}: parameter {k} after {steps} SGD step(s)")
    return loss_ref


def check_mlp(batch_size):
    x, y = batch((batch_size, 784))
    return _check_train(tl_mlp, torch_mlp, np_ref.MLP, mlp_params(), x, y, rtol=1e-4)


def check_lenet(batch_size, sgd=None):
    x, y = batch((batch_size, 1, 28, 28))
    return _check_train(lambda: lenet_layers(nn), lambda: lenet_layers(torch.nn), np_ref.LeNet,
                        lenet_params(), x, y, rtol=1e-4, sgd=sgd, steps=2 if sgd else 1)


# --- the 20-op chain (bench_chain.py) -------------------------------------------------------------
def chain20():
    import bench_chain as bc
    cases = {"numpy": Case(bc.numpy_step)}
    if tl is not None:
        cases["tinylazy"] = Case(bc.tinylazy_step)
    if torch is not None:
        xt, ones = torch.from_numpy(bc.X), torch.ones(4, 4)

        def torch_step():
            x = xt.clone().requires_grad_(True)
            bc.chain(x).backward(ones)
            return x.grad
        cases["torch"] = Case(torch_step)
    return cases


def check_chain20():
    cases = chain20()
    want = cases["numpy"]()
    for name in ("tinylazy", "torch"):
        if name in cases:
            g = cases[name]()
            np.testing.assert_allclose(np.asarray(g.numpy()), want, rtol=1e-5, err_msg=name)


# --- Adam over 100 small parameters ---------------------------------------------------------------
def adam_arrays(seed=2):
    """50 Linear(32, 32) layers: 100 parameters (weights 32x32, biases 32), with fixed gradients."""
    rng = np.random.default_rng(seed)
    shapes = [(32, 32), (32,)] * 50
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return params, grads


def adam_step(torch_variants=("foreach",)):
    """Cases: tinylazy Adam, the flat NumPy floor, torch Adam (foreach=True, PyTorch's batched
    implementation; "default" adds torch's CPU default, which is the per-parameter loop).
    Returns (cases, the initial parameter arrays, the fixed gradients)."""
    params, grads = adam_arrays()
    ref = np_ref.FlatAdam(params, grads)
    cases = {"numpy": Case(ref.step, probe=lambda: list(ref.views))}
    if tl is not None:
        tparams = [nn.Parameter(tl.tensor(p.copy())) for p in params]
        for p, g in zip(tparams, grads):
            p.grad = tl.tensor(g.copy())
        topt = optim.Adam(tparams, lr=1e-3)
        cases["tinylazy"] = Case(topt.step, probe=lambda: _arrays(tparams))
    if torch is not None:
        for variant in torch_variants:
            ps = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
            for p, g in zip(ps, grads):
                p.grad = torch.from_numpy(g.copy())
            kw = {"foreach": True} if variant == "foreach" else {}
            name = "torch" if variant == "foreach" else f"torch_{variant}"
            cases[name] = Case(torch.optim.Adam(ps, lr=1e-3, **kw).step,
                               probe=lambda ps=ps: _arrays(ps))
    return cases, params, grads


def check_adam(steps=3):
    """After `steps` steps every implementation holds the same parameters as the NumPy reference."""
    cases, _, _ = adam_step(("foreach", "default"))
    for _ in range(steps):
        for case in cases.values():
            case()
    want = cases["numpy"].probe()
    for name, case in cases.items():
        for k, (got, w) in enumerate(zip(case.probe(), want, strict=True)):
            np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-7, err_msg=f"{name} Adam, parameter {k}")


# --- first (materializing) forward vs steady state --------------------------------------------------
def first_forward(model="lenet", batch_size=64):
    """Cases for one forward of a lazy model: `*_first` on a fresh lazy model (its construction is setup,
    not timed), `*_steady` on one already materialized, and `tinylazy_materialize` (shape-only trace on
    the meta device plus allocation, no input data)."""
    shape = (batch_size, 1, 28, 28)
    x, _ = batch(shape)
    make_tl = (lambda: lenet_layers(nn, lazy=True)) if model == "lenet" else (lambda: lazy_mlp(nn))
    X = tl.from_numpy(x)
    steady = make_tl()
    steady(X)
    cases = {"tinylazy_first": Case(lambda net: net(X), lambda: (make_tl(),)),
             "tinylazy_steady": Case(lambda: steady(X)),
             "tinylazy_materialize": Case(lambda net: net.materialize(shape), lambda: (make_tl(),))}
    if torch is not None:
        make_t = (lambda: lenet_layers(torch.nn, lazy=True)) if model == "lenet" else (lambda: lazy_mlp(torch.nn))
        Xt = torch.from_numpy(x)
        tsteady = make_t()
        tsteady(Xt)
        cases["torch_first"] = Case(lambda net: net(Xt), lambda: (make_t(),))
        cases["torch_steady"] = Case(lambda: tsteady(Xt))
    return cases


def check_first_forward(model="lenet", batch_size=64):
    """The first forward infers the same parameter shapes as torch's lazy modules, leaves nothing lazy, and
    gives the same output as a steady-state forward; `materialize` on meta infers the same shapes."""
    x, _ = batch((batch_size, 1, 28, 28))
    make = (lambda m: lenet_layers(m, lazy=True)) if model == "lenet" else lazy_mlp
    net = make(nn)
    assert net.has_uninitialized_params()
    out = net(tl.from_numpy(x)).detach()
    assert out.shape == (batch_size, 10) and not net.has_uninitialized_params()
    np.testing.assert_allclose(net(tl.from_numpy(x)).detach().numpy(), out.numpy(), rtol=1e-6)
    shapes = [tuple(p.shape) for p in net.parameters()]
    meta = make(nn).materialize((batch_size, 1, 28, 28))
    assert [tuple(p.shape) for p in meta.parameters()] == shapes
    assert all(p.dtype == np.float32 and p.device == "cpu" for p in meta.parameters())
    if torch is not None:
        tnet = make(torch.nn)
        tnet(torch.from_numpy(x))
        assert [tuple(p.shape) for p in tnet.parameters()] == shapes
        load_into(tnet.parameters(), [p.detach().numpy() for p in net.parameters()])
        with torch.no_grad():
            np.testing.assert_allclose(tnet(torch.from_numpy(x)).numpy(), out.numpy(), rtol=1e-4, atol=1e-5)
    return shapes


# --- DataLoader throughput -------------------------------------------------------------------------
def fashion_arrays():
    ds = tl.datasets.FashionMNIST(train=True, subset=True)
    images, labels = ds.tensors
    return ds, images.numpy(), labels.numpy()


def fashion_arrays_numpy():
    """The bundled subset's training images and labels read with NumPy alone (no tinylazy in the process),
    as FashionMNIST gives them: float32 (N, 1, 28, 28) in [0, 1], int64 labels."""
    import gzip
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tinylazy", "data")
    def read(name, offset):
        with gzip.open(os.path.join(folder, f"fashion-mnist-subset-{name}.gz"), "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    images = np.divide(read("train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28), 255, dtype=np.float32)
    return images, read("train-labels-idx1-ubyte", 8).astype(np.int64)


def dataloader_epoch(batch_size=64):
    """Cases: one shuffled epoch over the bundled Fashion-MNIST subset (2,000 images), batch `batch_size`;
    each returns (number of samples, sum of labels, sum of pixels) so the epochs can be compared."""
    if tl is not None:
        ds, images, labels = fashion_arrays()
    else:
        images, labels = fashion_arrays_numpy()

    def epoch(it):
        n = lab = pix = 0
        for xb, yb in it:
            n += len(yb)
            lab += int(yb.sum())
            pix += float(xb.sum())
        return n, lab, pix

    def numpy_epoch():                     # the floor: a permutation and one fancy index per batch
        order = np.random.default_rng().permutation(len(labels))
        return epoch((images[order[i:i + batch_size]], labels[order[i:i + batch_size]])
                     for i in range(0, len(order), batch_size))
    cases = {"numpy": Case(numpy_epoch)}
    if tl is not None:
        loader = tl.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)
        cases["tinylazy"] = Case(lambda: epoch(loader))
    if torch is not None:
        tds = torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
        tloader = torch.utils.data.DataLoader(tds, batch_size=batch_size, shuffle=True)
        cases["torch"] = Case(lambda: epoch(tloader))
    return cases


def check_dataloader(cases):
    """Every implementation visits each of the 2,000 samples exactly once per epoch."""
    _, images, labels = fashion_arrays()
    np_images, np_labels = fashion_arrays_numpy()          # what the peers' own processes read
    assert np.array_equal(np_images, images) and np.array_equal(np_labels, labels), "subset read differently"
    want = (len(labels), int(labels.sum()), float(images.sum(dtype=np.float64)))
    for name, case in cases.items():
        n, lab, pix = case()
        assert (n, lab) == want[:2], f"{name}: epoch saw {n} samples, label sum {lab}; expected {want[:2]}"
        assert abs(pix - want[2]) <= 1e-3 * want[2], f"{name}: pixel sum {pix} != {want[2]}"
    return want
