"""Instructions per tinylazy train step of the lazy MLP (784-256-10, batch 32) or the demo's lazy LeNet
(batch 16), counted by valgrind for the tinylazy found in ROOT: for comparing two revisions without timing.

    python bench/count_step_instructions.py ROOT mlp|lenet      # ROOT: a checkout (e.g. from git archive)

Like count_instructions.py (which compares with hand-written NumPy): cachegrind counts the program with few
and with many steps, one thread, no address randomization, a fixed hash seed; the difference divided by the
difference in steps is one steady-state step (SGD), import, first call and warm-up excluded.
"""
import os
import re
import subprocess
import sys


def inner(root, model, steps):
    sys.path.insert(0, root)
    import numpy as np
    import tinylazy as tl
    import tinylazy.nn.functional as F
    from tinylazy import nn, optim
    from tinylazy import demo
    assert tl.__file__.startswith(root), tl.__file__
    rng = np.random.default_rng(0)
    tl.manual_seed(0)
    if model == "mlp":
        x, y = rng.standard_normal((32, 784)).astype(np.float32), rng.integers(0, 10, 32)
        net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))
    else:
        x, y = rng.standard_normal((16, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 16)
        net = demo.lenet()
    X, Y = tl.from_numpy(x), tl.from_numpy(y)
    opt = optim.SGD(net.parameters(), lr=0.05)
    for _ in range(steps):
        out = net(X)
        loss = F.cross_entropy(out, Y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def count(root, model, steps):
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    cmd = ["setarch", os.uname().machine, "-R", "valgrind", "--tool=cachegrind", "--cache-sim=no",
           "--cachegrind-out-file=/dev/null", sys.executable, os.path.abspath(__file__),
           "--inner", root, model, str(steps)]
    err = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"I\s+refs:\s+([\d,]+)", err).group(1).replace(",", ""))


if __name__ == "__main__":
    if sys.argv[1] == "--inner":
        inner(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit()
    root, model = os.path.abspath(sys.argv[1]), sys.argv[2]
    few, many = (11, 51) if model == "mlp" else (4, 16)
    a, b = count(root, model, few), count(root, model, many)
    print(f"{root} {model}: {(b - a) / (many - few):,.0f} instructions per step")
