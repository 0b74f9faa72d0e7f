"""LeNet on the full Fashion-MNIST: tinylazy (lazy layers) vs PyTorch CPU, same model and hyperparameters.

    python bench/fashion_epoch.py [--epochs 2] [--batch-size 128]

Trains d2l's LeNet with batch norm (the demo's model) with Adam, one framework after the other on the
same data order, and prints/writes a markdown table of test accuracy and seconds per epoch to
bench/results/fashion-epoch-<date>.md. Needs the Debian package dataset-fashion-mnist (or $TINYLAZY_DATA).
"""
import argparse
import datetime
import os
import platform
import time

import numpy as np

import tinylazy as tl
from tinylazy import demo, optim
from tinylazy.datasets import FashionMNIST

HERE = os.path.dirname(os.path.abspath(__file__))


def batches(n, batch_size, epoch):
    order = np.random.default_rng(epoch).permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def run_tinylazy(train, test, epochs, batch_size, lr):
    tl.manual_seed(0)
    X, y = train.tensors[0].array, train.tensors[1].array
    net = demo.lenet()
    opt = optim.Adam(net.parameters(), lr=lr)
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for idx in batches(len(y), batch_size, epoch):
            loss = tl.nn.functional.cross_entropy(net(tl.Tensor(X[idx])), tl.Tensor(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    net.eval()
    with tl.no_grad():
        Xt, yt = test.tensors[0].array, test.tensors[1].array
        pred = np.concatenate([net(tl.Tensor(Xt[i:i + 1000])).array.argmax(1) for i in range(0, len(yt), 1000)])
    return float((pred == yt).mean()), times


def run_torch(train, test, epochs, batch_size, lr):
    import torch
    from torch import nn
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.BatchNorm1d(120), nn.ReLU(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    X, y = torch.from_numpy(train.tensors[0].array), torch.from_numpy(train.tensors[1].array)
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for idx in batches(len(y), batch_size, epoch):
            idx = torch.from_numpy(idx)
            loss = nn.functional.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    net.eval()
    with torch.no_grad():
        Xt, yt = torch.from_numpy(test.tensors[0].array), test.tensors[1].array
        pred = torch.cat([net(Xt[i:i + 1000]).argmax(1) for i in range(0, len(yt), 1000)]).numpy()
    return float((pred == yt).mean()), times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    args = p.parse_args()
    train, test = FashionMNIST(train=True, subset=False), FashionMNIST(train=False, subset=False)
    import torch
    rows = []
    for name, fn in (("tinylazy", run_tinylazy), ("PyTorch CPU", run_torch)):
        acc, times = fn(train, test, args.epochs, args.batch_size, args.lr)
        rows.append((name, acc, times))
        print(f"{name}: test accuracy {acc:.4f}, seconds per epoch {[round(t, 1) for t in times]}", flush=True)
    ratio = np.median(rows[0][2]) / np.median(rows[1][2])
    lines = [f"# LeNet (batch norm, lazy layers in tinylazy) on the full Fashion-MNIST",
             "", f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads); "
             f"Adam lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs, same data order.", "",
             "| framework | test accuracy | seconds per epoch (median) |", "| --- | --- | --- |"]
    lines += [f"| {n} | {a:.4f} | {np.median(t):.1f} |" for n, a, t in rows]
    lines += ["", f"tinylazy / PyTorch epoch time: {ratio:.2f}x"]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"fashion-epoch-{datetime.date.today()}.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
