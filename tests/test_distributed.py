"""tinylazy.distributed, DistributedDataParallel and DistributedSampler.

The multi-process tests launch ``mpiexec -n 2`` (and ``-n 3``, ``-n 1``) on tests/dist_scenarios/worker.py,
each launch bounded by a timeout, and assert that every rank reported ok (the scenarios in
tests/dist_scenarios/, one module per topic, hold the checks and say what each compares). They are
skipped, saying why, where mpi4py or mpiexec is missing (``pip install mpi4py mpich``). The tests below
them run in this process without MPI: the autograd hooks DDP builds on, the sampler against PyTorch's,
and the errors.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

import tinylazy as tl
import tinylazy.distributed as dist
from tinylazy import nn
from tinylazy.utils.data import DataLoader, DistributedSampler, TensorDataset

import helpers

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_scenarios", "worker.py")


def _mpiexec():
    """[mpiexec, flags]: the one beside this Python first (the mpich wheel's, matching mpi4py's library), else
    the first on PATH; Open MPI's needs --oversubscribe (2 cores, 3 ranks) and, as root, --allow-run-as-root."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    path = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if path is None:
        return None
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    flags = []
    if "Open MPI" in version or "OpenRTE" in version:
        flags.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--allow-run-as-root")
    return [path] + flags


MPIEXEC = _mpiexec() if importlib.util.find_spec("mpi4py") is not None else None
HAVE_MPI = MPIEXEC is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="mpi4py or mpiexec is not installed "
                                                    "(pip install mpi4py mpich, or pip install -e '.[mpi]')")

SCENARIOS = ["collectives", "train_mlp", "train_lenet", "batchnorm_buffers", "no_sync_accumulation",
             "shared_and_unused", "buckets_overlap", "bucket_order", "no_sync_then_unused", "bucket_views",
             "mismatch", "wrapper_api", "sampler", "nccl_emulated"]
ODD = ["collectives", "train_mlp", "no_sync_accumulation", "shared_and_unused", "bucket_order", "no_sync_then_unused",
       "mismatch", "sampler", "nccl_emulated"]


def launch(n, scenarios, timeout=120, results_dir=None):
    """Run the worker on `n` ranks; returns (exit status, stdout, stderr). A launch that outlives
    `timeout` is killed (its whole process group) and reported as a failure."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.path.dirname(HERE), TINYLAZY_DIST_RESULTS=results_dir or "")
    env["TINYLAZY_DIST_EXPECT_WORLD"] = str(n)
    proc = subprocess.Popen(MPIEXEC + ["-n", str(n), sys.executable, WORKER, *scenarios], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(scenarios)} did not finish within {timeout} s\n{out}\n{err}")
    return proc.returncode, out, err


def results(n, scenarios):
    with tempfile.TemporaryDirectory() as folder:
        code, out, err = launch(n, scenarios, results_dir=folder)
        found = {}
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name)) as f:
                for line in f:
                    r = json.loads(line)
                    found[(r["name"], r["rank"])] = (r["status"], r["detail"])
    return {"code": code, "found": found, "stderr": err, "stdout": out}


@pytest.fixture(scope="module")
def two_ranks():
    return results(2, SCENARIOS)


@pytest.fixture(scope="module")
def three_ranks():
    return results(3, ODD)


def assert_all_ok(run, name, n):
    launch_error = run["found"].get(("launch", 0))
    assert launch_error is None, launch_error[1]
    for rank in range(n):
        got = run["found"].get((name, rank))
        assert got is not None, (f"rank {rank} reported nothing for {name} (exit status {run['code']})\n"
                                 f"{run['stdout'][-3000:]}\n{run['stderr'][-3000:]}")
        assert got[0] == "ok", f"rank {rank}, {name}: {got[1]}"
    assert run["code"] == 0, run["stderr"][-3000:]


@needs_mpi
@pytest.mark.parametrize("name", SCENARIOS)
def test_two_ranks(two_ranks, name):
    assert_all_ok(two_ranks, name, 2)


@needs_mpi
@pytest.mark.parametrize("name", ODD)
def test_three_ranks(three_ranks, name):
    assert_all_ok(three_ranks, name, 3)


@needs_mpi
def test_one_rank():
    run = results(1, ["collectives", "train_mlp", "sampler"])
    for name in ("collectives", "train_mlp", "sampler"):
        assert_all_ok(run, name, 1)


@needs_mpi
def test_a_rank_that_raises_in_forward_ends_the_job():
    code, out, err = launch(2, ["abort_forward"], timeout=60)
    assert code != 0
    assert ("tinylazy.distributed [rank 1/2]: DistributedDataParallel.forward raised ShapeError: Linear "
            "'module.0': expected an input with in_features=3, got 5") in err, err
    assert "aborting the job (MPI_Abort)" in err
    assert "RESULT" not in out                                   # rank 0 stopped too, in its all-reduce


@needs_mpi
def test_a_collective_that_a_rank_never_joins_times_out():
    code, out, err = launch(2, ["timeout"], timeout=60)
    assert code != 0
    assert ("tinylazy.distributed [rank 0/2]: all_reduce(sum) of 3 float32 values did not complete within 3 s"
            in err), err


# --- in this process, no MPI --------------------------------------------------------------------------
def test_post_accumulate_grad_hook_runs_once_with_the_whole_gradient():
    torch = helpers.torch()
    w = tl.tensor([1.0, -2.0, 3.0], dtype=tl.float64, requires_grad=True)
    tw = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    seen, tseen = [], []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.tolist()))
    tw.register_post_accumulate_grad_hook(lambda t: tseen.append(t.grad.tolist()))
    ((w * 2).sum() + (w * w).sum() + w[1]).backward()         # three paths into w
    ((tw * 2).sum() + (tw * tw).sum() + tw[1]).backward()
    assert seen == tseen and len(seen) == 1
    (w * 3).sum().backward()                                   # accumulates: the hook sees the sum
    (tw * 3).sum().backward()
    assert seen == tseen and len(seen) == 2
    handle.remove()
    (w * 3).sum().backward()
    assert len(seen) == 2


def test_post_accumulate_grad_hook_on_a_leaf_root_and_errors():
    w = tl.ones(2, requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.tolist()))
    w.backward(tl.tensor([1.0, 2.0]))
    assert seen == [[1.0, 2.0]]
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (w * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(TypeError, match="must be callable"):
        w.register_post_accumulate_grad_hook(3)


def test_queue_callback_runs_once_when_backward_ends():
    w = tl.ones(3, requires_grad=True)
    order = []

    def hook(t):
        order.append("grad")
        tl.autograd.queue_callback(lambda: order.append(("end", t.grad.tolist())))
    w.register_post_accumulate_grad_hook(hook)
    (w * w).sum().backward()
    assert order == ["grad", ("end", [2.0, 2.0, 2.0])]
    tl.autograd.queue_callback(lambda: order.append("stale"))   # outside backward: dropped by the next one
    (w * 0).sum().backward()
    assert "stale" not in order


@pytest.mark.parametrize("n", [1, 7, 10, 12])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_matches_pytorch_without_shuffle(n, replicas, drop_last):
    helpers.torch()
    from torch.utils.data import DistributedSampler as TorchSampler
    for rank in range(replicas):
        ours = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        theirs = TorchSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_distributed_sampler_shuffles_by_seed_and_epoch():
    parts = [DistributedSampler(range(11), num_replicas=3, rank=r, seed=5) for r in range(3)]
    first = [list(p) for p in parts]
    flat = [i for p in first for i in p]
    assert set(flat) == set(range(11)) and len(flat) == 12           # covering, one index repeated as padding
    assert first == [list(p) for p in parts]                         # the same epoch, the same order
    for p in parts:
        p.set_epoch(1)
    second = [list(p) for p in parts]
    assert second != first and set(i for p in second for i in p) == set(range(11))
    assert list(DistributedSampler(range(11), num_replicas=3, rank=0, seed=6)) != first[0]


def test_distributed_sampler_errors():
    with pytest.raises(ValueError, match="invalid rank 3, rank should be in \\[0, 2\\]"):
        DistributedSampler(range(4), num_replicas=3, rank=3)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(4))
    with pytest.raises(TypeError, match="num_replicas must be an integer"):
        DistributedSampler(range(4), num_replicas=2.0, rank=0)


def test_dataloader_with_a_sampler():
    X = tl.arange(10, dtype=tl.float32).reshape(10, 1)
    sampler = DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False)
    loader = DataLoader(TensorDataset(X), batch_size=2, sampler=sampler)
    assert len(loader) == 2
    assert [b.array.ravel().tolist() for (b,) in loader] == [[1.0, 4.0], [7.0, 0.0]]
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(TensorDataset(X), sampler=sampler, shuffle=True)


def test_without_a_process_group_the_errors_say_what_to_do():
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.get_world_size, dist.barrier, lambda: dist.all_reduce(tl.ones(2)),
                 lambda: nn.parallel.DistributedDataParallel(nn.Linear(2, 2))):
        with pytest.raises(dist.DistributedError, match="call tinylazy.distributed.init_process_group"):
            call()
    with pytest.raises(dist.DistributedError, match="unknown backend 'gloo'"):
        dist.init_process_group("gloo")
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        dist.init_process_group("mpi", timeout=-1)


def test_backend_availability_follows_the_installed_packages(monkeypatch):
    assert dist.is_available()
    assert dist.is_mpi_available() == (importlib.util.find_spec("mpi4py") is not None)
    assert dist.is_nccl_available() == (dist.is_mpi_available() and importlib.util.find_spec("cupy") is not None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)     # as if nothing were installed
    assert not dist.is_mpi_available() and not dist.is_nccl_available()


def test_ddp_arguments_are_checked_before_anything_happens():
    for kwargs, match in (({"dim": 1}, "only dim=0"), ({"bucket_cap_mb": 0}, "bucket_cap_mb must be positive")):
        with pytest.raises(ValueError, match=match):
            nn.parallel.DistributedDataParallel(nn.Linear(2, 2), **kwargs)
    with pytest.raises(TypeError, match="expected an nn.Module, got function"):
        nn.parallel.DistributedDataParallel(lambda x: x)


def test_a_missing_mpi4py_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)            # `from mpi4py import MPI` now fails
    with pytest.raises(dist.DistributedError, match=r"pip install mpi4py mpich"):
        dist.init_process_group("mpi")
    assert not dist.is_initialized()


@pytest.mark.skipif(tl.cuda.is_available(), reason="checks the error of a machine without a usable GPU")
@pytest.mark.filterwarnings("ignore::UserWarning")               # CuPy: "nccl library could not be loaded"
def test_nccl_without_a_gpu_says_so():
    with pytest.raises(dist.DistributedError, match="nccl"):
        dist.init_process_group("nccl")
    assert not dist.is_initialized()


def test_importing_tinylazy_does_not_import_mpi():
    code = "import sys, tinylazy, tinylazy.distributed; from tinylazy.nn.parallel import DistributedDataParallel; " \
           "print('mpi4py' in sys.modules, 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
    assert out.stdout.split() == ["False", "False"], out.stderr


@needs_mpi
def test_the_demo_trains_data_parallel(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.path.dirname(HERE))
    path = tmp_path / "ck.tl"
    proc = subprocess.Popen(MPIEXEC + ["-n", "2", sys.executable, "-m", "tinylazy.demo", "--distributed",
                             "--model", "mlp", "--epochs", "1", "--save", str(path)], env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the distributed demo did not finish within 120 s")
    assert proc.returncode == 0, err[-3000:]
    assert out.count("test accuracy: ") == 1 and out.count("saved checkpoint") == 1, out   # rank 0 only
    assert float(out.rsplit("test accuracy: ", 1)[1].split()[0]) > 0.5
    state = tl.load(str(path))
    assert state["epoch"] == 1 and "1.weight" in state["model"]            # the module's keys, not DDP's
