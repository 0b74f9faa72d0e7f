"""Instructions per steady-state train step of whichever tinylazy PYTHONPATH picks, MLP or LeNet (valgrind).

    PYTHONPATH=/tmp/old python bench/count_step.py mlp 32       # e.g. a revision extracted with git archive
    PYTHONPATH=$PWD python bench/count_step.py lenet 64

Like count_instructions.py (which compares tinylazy with NumPy on the MLP), but for comparing two versions
of tinylazy on the MLP or LeNet: (instructions of n2 steps - of n1 steps) / (n2 - n1), SGD lr 0.05, one
thread, no address randomization, fixed hash seed. Compare only counts taken with the same n1, n2.
"""
import os, re, subprocess, sys
def inner(model, b, steps):
    import numpy as np
    import tinylazy as tl
    try:
        from tinylazy._malloc import tune_from_env        # as count_instructions.py (older revisions)
        tune_from_env()
    except ImportError:
        pass
    from tinylazy import nn, optim
    import tinylazy.nn.functional as F
    tl.manual_seed(0)
    rng = np.random.default_rng(1)
    if model == "mlp":
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)); shape = (b, 784)
    else:
        net = nn.Sequential(nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)); shape = (b, 1, 28, 28)
    X = tl.from_numpy(rng.random(shape, dtype=np.float32)); Y = tl.from_numpy(rng.integers(0, 10, b))
    opt = optim.SGD(net.parameters(), lr=0.05)
    for _ in range(steps):
        loss = F.cross_entropy(net(X), Y); opt.zero_grad(); loss.backward(); opt.step()
def count(model, b, steps):
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = ["setarch", os.uname().machine, "-R", "valgrind", "--tool=cachegrind", "--cache-sim=no",
           "--cachegrind-out-file=/dev/null", sys.executable, __file__, "--inner", model, str(b), str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"I\s+refs:\s+([\d,]+)", out).group(1).replace(",", ""))
if __name__ == "__main__":
    if sys.argv[1] == "--inner":
        inner(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])); sys.exit()
    model, b = sys.argv[1], int(sys.argv[2]); n1, n2 = (2, 6) if model == "lenet" else (3, 9)
    per = (count(model, b, n2) - count(model, b, n1)) // (n2 - n1)
    print(f"{os.environ.get('PYTHONPATH')} {model} b{b}: {per:,} instructions/step")
