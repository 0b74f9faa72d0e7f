"""The main job, end to end: `python -m tinylazy.demo` on the bundled subset, checkpoint and resume, and
LeNet (every layer lazy) on the full Fashion-MNIST when the Debian package is installed."""
import os
import subprocess
import sys

import pytest

import tinylazy as tl
from tinylazy import demo, nn, optim
from tinylazy.datasets import FashionMNIST
from tinylazy.utils.data import DataLoader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "tinylazy.demo", *args], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_shows_the_lazy_model_and_ends_with_accuracy(tmp_path):
    ckpt = str(tmp_path / "lenet.tl")
    out = run_demo("--epochs", "1", "--save", ckpt)
    assert "Linear(in_features=None, out_features=120, bias=True)" in out          # before the first forward
    assert "Linear(in_features=400, out_features=120, bias=True)" in out           # after: inferred
    assert "Conv2d(1, 6, kernel_size=(5, 5)" in out and "Total params: 62,158" in out
    assert "bundled" in out and "batches/s" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: 0.")
    accuracy = float(last.split(":")[1])
    assert accuracy > 0.5                                   # one epoch on 2,000 images is well past chance
    resumed = run_demo("--epochs", "1", "--resume", ckpt)
    assert f"resumed from {ckpt}" in resumed
    assert resumed.strip().splitlines()[-1].startswith("test accuracy: 0.")


def test_demo_mlp_option():
    out = run_demo("--model", "mlp", "--epochs", "1")
    assert "Linear(in_features=784, out_features=256, bias=True)" in out
    assert out.strip().splitlines()[-1].startswith("test accuracy: 0.")


def test_demo_rejects_unknown_model():
    with pytest.raises(SystemExit):
        demo.parse_args(["--model", "resnet"])


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="the full Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
def test_lazy_lenet_reaches_085_on_full_fashion_mnist():
    tl.manual_seed(0)
    train, test = FashionMNIST(train=True, subset=False), FashionMNIST(train=False, subset=False)
    assert len(train) == 60_000 and len(test) == 10_000
    net = demo.lenet()
    opt = optim.Adam(net.parameters(), lr=2e-3)
    loader = DataLoader(train, batch_size=128, shuffle=True)
    for _ in range(2):
        for X, y in loader:
            loss = nn.functional.cross_entropy(net(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    accuracy = demo.evaluate(net, DataLoader(test, batch_size=1000))
    assert accuracy >= 0.85, accuracy
