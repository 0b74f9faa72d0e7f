"""The cuda device of tinylazy, run on the CPU: CuPy imitated strictly (tests/kernel_emulator.py: unhashable
Device, no implicit host conversion, synchronizing calls counted) and the real kernels compiled for the host.

What a careful reading of CuPy 14 found, checked here without a GPU:
- a cuda training step makes no synchronizing call (no `.get()`, `.item()`, `int()`, `bool()` of device
  data, no boolean-mask indexing), which is also what a CUDA-graph capture of the step needs;
- index checks on cuda run on the device and raise at the next read (tinylazy._devcheck), or at once with
  TINYLAZY_SYNC_CHECKS=1; cross_entropy's ignore_index is handled by the fused kernel;
- the optimizer paths that skip the fused kernel (amsgrad, maximize) run on cuda (cupy.cuda.Device is not
  hashable: tinylazy._update.Scratch once keyed a dict on it);
- randperm and DataLoader shuffling work with CuPy's Generator, which has no `permutation`.
"""
import copy
import importlib.util
import operator
from pathlib import Path

import numpy as np
import pytest

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy import _devcheck, backend, nn, optim
from tinylazy.fast import kernels as _kernels
from tinylazy.utils.data import DataLoader, TensorDataset

_spec = importlib.util.spec_from_file_location("kernel_emulator", Path(__file__).with_name("kernel_emulator.py"))
emulator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(emulator)


@pytest.fixture
def emu(monkeypatch):
    """tinylazy's cuda device backed by the emulator, with every cache that holds device objects emptied."""
    if not emulator.available():
        pytest.skip("kernel emulator: g++ is not installed")
    monkeypatch.setattr(backend, "_cupy", emulator.FakeCupy())
    for cache in ("_MODULES", "_FUNCTIONS", "_SM_COUNT", "_TABLES"):
        monkeypatch.setattr(_kernels, cache, {})
    for cache in ("_ERRORS", "_MESSAGES"):
        monkeypatch.setattr(_devcheck, cache, {})
    monkeypatch.setattr(_devcheck, "_ARMED", set())
    monkeypatch.delenv("TINYLAZY_KERNELS", raising=False)
    monkeypatch.delenv("TINYLAZY_SYNC_CHECKS", raising=False)
    tl.manual_seed(0)                                    # drop generators made for another cupy
    emulator.reset_counters()
    yield emulator
    tl.manual_seed(0)


def _host(t):
    return t.array.get() if type(t.array) is emulator.EmuArray else np.asarray(t.array)


class Net(nn.Module):
    """Every op whose cuda path once read device data: conv + max pool, embedding, dropout, cross_entropy."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.embed = nn.Embedding(7, 8)
        self.drop = nn.Dropout(0.25)
        self.fc1 = nn.Linear(4 * 4 * 4 + 8, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x, tokens):
        h = self.pool(F.relu(self.conv(x))).flatten(1)
        h = tl.cat([h, self.embed(tokens)], dim=1)
        return self.fc2(self.drop(F.relu(self.fc1(h))))


def _data(dev):
    rng = np.random.default_rng(1)
    x = tl.tensor(rng.standard_normal((6, 1, 8, 8)).astype(np.float32), device=dev)
    tokens = tl.tensor(rng.integers(0, 7, 6), device=dev)
    y = tl.tensor(rng.integers(0, 10, 6), device=dev)
    return x, tokens, y


def _train(net, opt, x, tokens, y, steps, set_to_none=True):
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=set_to_none)
        loss = F.cross_entropy(net(x, tokens), y, label_smoothing=0.1)
        loss = loss + 0 * F.one_hot(y, 10).float().sum()            # one_hot with num_classes given
        loss.backward()
        opt.step()
        losses.append(loss)
    return losses


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("make_opt", [lambda p: optim.Adam(p, lr=1e-2), lambda p: optim.SGD(p, lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd"])
def test_cuda_training_step_makes_no_synchronizing_call(emu, make_opt, set_to_none):
    net = Net().to("cuda")
    opt = make_opt(net.parameters())
    data = _data("cuda")
    _train(net, opt, *data, steps=1, set_to_none=set_to_none)             # warm-up: state, chunk tables
    emu.reset_counters()
    launches = _kernels.LAUNCHES
    _train(net, opt, *data, steps=3, set_to_none=set_to_none)
    assert dict(emu.SYNCS) == {}, "a training step made the host wait for the device"
    assert _kernels.LAUNCHES > launches                                   # the custom kernels did run
    if set_to_none:     # fresh gradients may land elsewhere: at most the optimizer's pointer array, once a step
        assert set(emu.UPLOADS) <= {"cupy.asarray"} and sum(emu.UPLOADS.values()) <= 3
    else:               # gradients kept in place: nothing at all is copied to the device
        assert dict(emu.UPLOADS) == {}


def test_cuda_training_matches_cpu(emu):
    cpu_net = Net()
    cpu_net.drop.p = 0.0                                                  # same numbers on both devices
    gpu_net = copy.deepcopy(cpu_net).to("cuda")
    cpu_losses = _train(cpu_net, optim.Adam(cpu_net.parameters(), lr=1e-2), *_data("cpu"), steps=3)
    gpu_losses = _train(gpu_net, optim.Adam(gpu_net.parameters(), lr=1e-2), *_data("cuda"), steps=3)
    np.testing.assert_allclose([_host(t) for t in gpu_losses], [_host(t) for t in cpu_losses], rtol=1e-5)
    for (name, a), (_, b) in zip(gpu_net.named_parameters(), cpu_net.named_parameters()):
        np.testing.assert_allclose(_host(a), _host(b), rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("targets", [[3, -100, 0, 4, -100], [-100, -100, -100, -100, -100], [1, 2, 3, 4, 0]],
                         ids=["some-ignored", "all-ignored", "none-ignored"])
def test_cross_entropy_ignore_index_on_cuda_equals_cpu(emu, reduction, smoothing, targets):
    z = np.random.default_rng(2).standard_normal((5, 6)).astype(np.float32)
    results = []
    for dev in ("cpu", "cuda"):
        x = tl.tensor(z, device=dev, requires_grad=True)
        loss = F.cross_entropy(x, tl.tensor(targets, device=dev), reduction=reduction, label_smoothing=smoothing)
        loss.sum().backward()
        results.append((_host(loss), _host(x.grad)))
    (cpu_loss, cpu_grad), (gpu_loss, gpu_grad) = results
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-5, atol=1e-6)     # nan where all are ignored (mean)
    np.testing.assert_allclose(gpu_grad, cpu_grad, rtol=1e-5, atol=1e-6)
    assert emu.SYNCS["ndarray.get"] >= 1 and emu.SYNCS["ndarray.__int__"] == 0


def test_bad_indices_on_cuda_raise_at_the_next_read(emu, monkeypatch):
    x = tl.randn(4, 5, device="cuda", requires_grad=True)
    loss = F.cross_entropy(x, tl.tensor([0, 1, 5, 2], device="cuda"))      # class 5 of 5: out of range
    loss.backward()                                                        # nothing read: no error yet
    assert dict(emu.SYNCS) == {}
    with pytest.raises(IndexError, match=r"cross_entropy: a target class is out of range for 5 classes"):
        loss.item()
    assert np.isnan(loss.item())                                           # reported once; the loss row is NaN
    emb = tl.randn(3, 2, device="cuda")
    F.embedding(tl.tensor([0, 3], device="cuda"), emb)
    F.one_hot(tl.tensor([1, -1], device="cuda"), 4)
    with pytest.raises(IndexError, match=r"(?s)embedding: an index is out of range.*one_hot: class values"):
        tl.cuda.check_errors()
    tl.cuda.check_errors()                                                 # cleared
    F.embedding(tl.tensor([0, 2], device="cuda"), emb)                     # valid indices: nothing to report
    tl.cuda.synchronize()
    monkeypatch.setenv("TINYLAZY_SYNC_CHECKS", "1")                       # debugging: raise at the call
    with pytest.raises(IndexError, match="index 3 is out of range"):
        F.embedding(tl.tensor([0, 3], device="cuda"), emb)
    with pytest.raises(IndexError, match="target class 5 is out of range"):
        F.cross_entropy(x, tl.tensor([0, 1, 5, 2], device="cuda"))


def test_max_pool_backward_with_nan_on_cuda_equals_cpu(emu):
    a = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    a[0, 0, 0, 1] = a[0, 1, 3, 3] = np.nan
    grads = []
    for dev in ("cpu", "cuda"):
        x = tl.tensor(a, device=dev, requires_grad=True)
        F.max_pool2d(x, 2).sum().backward()
        grads.append(_host(x.grad))
    np.testing.assert_array_equal(grads[1], grads[0])


@pytest.mark.parametrize("options", [dict(amsgrad=True), dict(maximize=True), dict(weight_decay=0.1)])
def test_adam_outside_the_fused_kernel_runs_on_cuda(emu, options):
    """amsgrad and maximize take tinylazy._update's per-parameter rules with Scratch buffers on cuda."""
    cpu_p = [tl.tensor(np.linspace(-1, 1, n, dtype=np.float32), requires_grad=True) for n in (3, 5)]
    gpu_p = [tl.tensor(_host(p), device="cuda", requires_grad=True) for p in cpu_p]
    for params in (cpu_p, gpu_p):
        opt = optim.Adam(params, lr=0.1, **options)
        for _ in range(2):
            opt.zero_grad()
            sum((p * p).sum() for p in params).backward()
            opt.step()
    for a, b in zip(gpu_p, cpu_p):
        np.testing.assert_allclose(_host(a), _host(b), rtol=1e-6)


def test_emulated_cupy_objects_are_as_strict_as_cupy(emu):
    cp = backend.cupy_module()
    dev = cp.cuda.Device(0)
    with pytest.raises(TypeError):
        hash(dev)
    with pytest.raises(TypeError):
        operator.index(dev)
    assert int(dev) == 0 and dev == cp.cuda.Device()
    a = cp.asarray(np.arange(3))
    with pytest.raises(TypeError):
        hash(a)
    with pytest.raises(TypeError):
        operator.index(a[0])
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cp.maximum(a, np.arange(3))
    assert type(a.sum()) is emulator.EmuArray                     # reductions stay on the device
    assert not hasattr(cp.random.Generator(cp.random.XORWOW(0)), "permutation")


def test_randperm_and_shuffle_on_cuda(emu):
    p = tl.randperm(50, device="cuda")
    assert p.device == "cuda" and p.dtype == tl.int64
    assert sorted(_host(p).tolist()) == list(range(50)) and _host(p).tolist() != list(range(50))
    tl.manual_seed(0)
    np.testing.assert_array_equal(_host(tl.randperm(50, device="cuda")), _host(p))      # seeded
    assert tl.randperm(0, device="cuda").shape == (0,)
    assert tl.randperm(5, device="meta").shape == (5,)
    x = tl.tensor(np.arange(10, dtype=np.float32), device="cuda")
    loader = DataLoader(TensorDataset(x), batch_size=4, shuffle=True)
    seen = [_host(b[0]).tolist() for b in loader]
    assert sorted(sum(seen, [])) == list(range(10)) and sum(seen, []) != list(range(10))
    emu.reset_counters()
    for _ in loader:
        pass
    assert emu.UPLOADS["cupy.array"] <= 1                           # the epoch's order, once (not per batch)
    cuda_gen = backend.RNG.generator("cuda")                        # a CuPy Generator: no permutation method
    seen = sum((_host(b[0]).tolist() for b in DataLoader(TensorDataset(x), batch_size=3, shuffle=True,
                                                          generator=cuda_gen)), [])
    assert sorted(seen) == list(range(10))


@pytest.mark.parametrize("targets", [[[1, -100], [2, 0], [-100, 3]], [[-100, -100], [-100, -100], [-100, -100]]],
                         ids=["some-ignored", "all-ignored"])
@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_and_nd_class_losses_on_cuda_equal_cpu(emu, targets, weighted):
    """The non-fused path on cuda: device masks for ignored targets, the mean's denominator never read."""
    z = np.random.default_rng(3).standard_normal((3, 4, 2)).astype(np.float32)
    w = np.array([0.5, 1.0, 2.0, 0.25], np.float32) if weighted else None
    results = []
    for dev in ("cpu", "cuda"):
        x = tl.tensor(z, device=dev, requires_grad=True)
        weight = None if w is None else tl.tensor(w, device=dev)
        t = tl.tensor(targets, device=dev)
        loss = F.cross_entropy(x, t, weight=weight, label_smoothing=0.1) + F.nll_loss(F.log_softmax(x, 1), t, weight=weight)
        loss.backward()
        results.append((_host(loss), _host(x.grad)))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)
    assert emu.SYNCS["ndarray.__int__"] == emu.SYNCS["ndarray.__bool__"] == 0
