"""The main job: a lazy LeNet (or MLP) trained on Fashion-MNIST.

    python -m tinylazy.demo [--model lenet|mlp] [--device cpu|cuda] [--epochs N] [--batch-size B]
                            [--lr LR] [--full] [--save PATH] [--resume PATH]
    mpiexec -n 2 python -m tinylazy.demo --distributed      (data-parallel, see tinylazy.distributed)

Every layer is lazy: the model is written without a single input size. The demo prints it before and
after the first forward (the sizes appear), a summary table, then trains with a progress line and ends
with `test accuracy: 0.xxxx`.
"""
import argparse
import sys
import time

import tinylazy as tl
from tinylazy import nn, optim
from tinylazy.datasets import FashionMNIST
from tinylazy.utils.data import DataLoader, DistributedSampler


def lenet():
    """d2l's LeNet with batch normalization, written from lazy layers only."""
    return nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5, padding=2), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.LazyConv2d(16, kernel_size=5), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.LazyLinear(120), nn.LazyBatchNorm1d(), nn.ReLU(),
        nn.LazyLinear(84), nn.LazyBatchNorm1d(), nn.ReLU(),
        nn.LazyLinear(10))


def mlp():
    """A two-hidden-layer MLP, also from lazy layers."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(256), nn.ReLU(), nn.Dropout(0.1),
                         nn.LazyLinear(128), nn.ReLU(), nn.LazyLinear(10))


MODELS = {"lenet": lenet, "mlp": mlp}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m tinylazy.demo", description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="lenet")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu); cuda needs a GPU and CuPy")
    p.add_argument("--epochs", type=int, default=8,
                   help="epochs to train (default 8); after --resume, more epochs, numbered on from the checkpoint's")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--full", action="store_true",
                   help="train on the full Fashion-MNIST (60,000 images) from $TINYLAZY_DATA or "
                        "/usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist); if it is not "
                        "there, the demo says how to get it and stops. Default: the 2,000-image subset bundled "
                        "with tinylazy")
    p.add_argument("--save", metavar="PATH", help="write a checkpoint (model name, model, optimizer, epoch) after training")
    p.add_argument("--resume", metavar="PATH", help="start from a checkpoint written by --save (with the same --model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distributed", action="store_true", help="data-parallel over the ranks of mpiexec -n N "
                   "(MPI for cpu, NCCL for cuda); rank 0 prints and writes the checkpoint")
    return p.parse_args(argv)


def evaluate(net, loader):
    net.eval()
    correct = total = 0
    with tl.no_grad():
        for X, y in loader:
            correct += int((net(X).argmax(dim=1) == y).sum())
            total += len(y)
    net.train()
    return correct / max(total, 1)


class Progress:
    """One line per epoch, redrawn in place on a terminal: batches/s and the running loss."""

    def __init__(self, epoch, epochs, total):
        self.epoch, self.epochs, self.total = epoch, epochs, total
        self.start = time.perf_counter()
        self.tty = sys.stdout.isatty()

    def line(self, done, loss):
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        width = 24
        bar = "#" * (width * done // self.total) + "." * (width - width * done // self.total)
        return f"epoch {self.epoch}/{self.epochs} [{bar}] {done}/{self.total} batches, {rate:.0f} batches/s, loss {loss:.4f}"

    def update(self, done, loss):
        if self.tty:
            print("\r" + self.line(done, loss), end="", flush=True)

    def finish(self, done, loss, extra):
        print(("\r" if self.tty else "") + self.line(done, loss) + extra, flush=True)


def fail(message):
    """Stop with a one-line error (exit status 2, as for a bad command line), before any work is done."""
    print(f"python -m tinylazy.demo: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def check_device(name):
    try:
        device = tl.device(name)
    except ValueError as e:
        fail(f"--device {name}: {e}")
    if device.type == "meta":
        fail("--device meta: the meta device holds shapes but no values, so it cannot train; use cpu or cuda")
    if device.type == "cuda" and device.index >= tl.cuda.device_count():
        found = f"{tl.cuda.device_count()} GPU(s) found" if tl.cuda.is_available() else "no GPU or no CuPy here"
        fail(f"--device {name}: {found}; use --device cpu, or install CuPy on a machine with an NVIDIA GPU "
             f"(pip install 'tinylazy[cuda]')")
    return device


def load_checkpoint(path, model, device):
    """The checkpoint at `path`, checked to hold a `model` (checkpoints store the --model name)."""
    try:
        state = tl.load(path, map_location=str(device))
    except (OSError, ValueError) as e:
        fail(f"--resume {path}: {e}")
    if not (isinstance(state, dict) and "model" in state and "optimizer" in state):
        fail(f"--resume {path}: not a checkpoint written by --save (no 'model' and 'optimizer' entries)")
    saved = state.get("model_name")                         # None in checkpoints older than the name
    if saved is not None and saved != model:
        fail(f"--resume {path}: the checkpoint holds a '{saved}' model, but --model is '{model}'; "
             f"add --model {saved}")
    return state


def load_data(full):
    try:
        return FashionMNIST(train=True, subset=not full), FashionMNIST(train=False, subset=not full)
    except FileNotFoundError as e:
        if not full:
            raise
        fail(f"--full: the full Fashion-MNIST is not installed: {e}. Without --full the demo uses the bundled subset")


def main(argv=None):
    args = parse_args(argv)
    device = check_device(args.device)                     # every check before any work or output
    state = load_checkpoint(args.resume, args.model, device) if args.resume else None
    train, test = load_data(args.full)
    tl.manual_seed(args.seed)
    rank, sampler = 0, None
    if args.distributed:
        device, rank = start_distributed(device)
    print(f"data: {train.describe()}; {len(train)} train / {len(test)} test images")
    if args.distributed:
        sampler = DistributedSampler(train, seed=args.seed)         # this rank's share of every epoch
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                              device=device)
    test_loader = DataLoader(test, batch_size=512, device=device)

    net = MODELS[args.model]()
    print("\nthe model as written (every size still unknown):")
    print(net)
    optimizer = optim.Adam(net.parameters(), lr=args.lr)     # built before the first forward: rule 12
    model = nn.parallel.DistributedDataParallel(net) if args.distributed else net

    X0, _ = next(iter(train_loader))
    start = 0                                                # epochs already trained
    if state is not None:
        try:
            net.load_state_dict(state["model"])             # materializes the lazy model from the checkpoint
        except RuntimeError:
            fail(f"--resume {args.resume}: the checkpoint's keys or shapes do not fit --model {args.model} "
                 f"(was it saved with another --model?)")
        optimizer.load_state_dict(state["optimizer"])
        start = int(state.get("epoch", 0))
        print(f"\nresumed from {args.resume} (epoch {start})")
    else:
        model(X0[:2])                                        # the first forward infers every size
    print("\nafter the first forward:")
    print(net)
    print()
    print(net.summary(X0[:1]))

    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_loader))
    print()
    for epoch in range(start + 1, start + args.epochs + 1):
        progress = Progress(epoch, start + args.epochs, len(train_loader))
        if sampler is not None:
            sampler.set_epoch(epoch)
        running = 0.0
        for i, (X, y) in enumerate(train_loader, 1):
            loss = nn.functional.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += (float(loss) - running) / min(i, 20)
            if i % 10 == 0:
                progress.update(i, running)
        seconds = time.perf_counter() - progress.start
        progress.finish(len(train_loader), running,
                        f", {len(train) / seconds:.0f} images/s, test acc {evaluate(net, test_loader):.4f}")

    if args.save and rank == 0:
        tl.save({"model_name": args.model, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                 "epoch": start + args.epochs}, args.save)
        print(f"saved checkpoint to {args.save}")
    print(f"test accuracy: {evaluate(net, test_loader):.4f}")


def start_distributed(device):
    """Join the job (NCCL for cuda, MPI for cpu); ranks other than 0 print nothing. (device, rank)."""
    import os
    import tinylazy.distributed as dist
    dist.init_process_group("nccl" if device.type == "cuda" else "mpi")
    if device.type == "cuda":
        device = tl.device(f"cuda:{dist.group().device_id}")         # this rank's GPU
    if dist.get_rank() != 0:
        sys.stdout = open(os.devnull, "w")
    elif dist.get_world_size() > 1 and not ({"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"} & set(os.environ)):
        print(f"note: {dist.get_world_size()} ranks, each with a BLAS thread per core: on one machine set "
              f"OMP_NUM_THREADS=1 (as torchrun does), e.g. OMP_NUM_THREADS=1 mpiexec -n "
              f"{dist.get_world_size()} python -m tinylazy.demo --distributed", flush=True)
    return device, dist.get_rank()


if __name__ == "__main__":
    main()
