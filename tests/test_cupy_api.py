"""Every CuPy name and keyword that tinylazy uses, checked against the installed CuPy package's real
signatures (CuPy imports without a GPU), so that a call that would raise on a GPU fails here on the CPU.

Two sources of "what tinylazy uses":
- static: every attribute chain and call in tinylazy/ and bench/gpu_check.py rooted at `cp`, `cupy`,
  `backend.cupy_module()` (always CuPy) or `xp` (NumPy or CuPy, so it must exist in CuPy too);
- dynamic: the CuPy functions, ufuncs, array methods and Generator methods that a cuda training step and
  the kernel wrappers call under the strict emulator (tests/kernel_emulator.py records them).
It also checks that the emulator's fakes are no more lenient than CuPy where tinylazy could trip: an
unhashable Device and array without __index__, a Generator without `permutation`.

Skipped, with the reason, where CuPy is not installed (CI installs cupy-cuda13x so that it runs there).
"""
import ast
import importlib.util
import inspect
import operator
import re
from pathlib import Path

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install cupy-cuda13x: it imports without a GPU)")

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "tinylazy").rglob("*.py")) + [ROOT / "bench" / "gpu_check.py"]

# xp.<name> calls on paths that only NumPy ever reaches (name -> the reason), so CuPy need not have them.
NUMPY_ONLY = {}


# ---- reading CuPy's signatures ------------------------------------------------------------------------------
def _split_params(text):
    depth, piece, out = 0, "", []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(piece.strip())
            piece = ""
        else:
            piece += ch
    if piece.strip():
        out.append(piece.strip())
    return out


def parameters(obj):
    """(names of the keyword-passable parameters, accepts **kwargs), or None when CuPy does not say.
    From inspect.signature, else from the first docstring line that Cython writes ("f(self, a, b=1)")."""
    try:
        sig = inspect.signature(obj)
        names = {p.name for p in sig.parameters.values()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        return names, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    except (TypeError, ValueError):
        pass
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    match = re.match(r"^[\w.]+\((.*)\)(\s*->.*)?$", doc[0].strip()) if doc else None
    if match is None:
        return None
    names, varkw = set(), False
    for piece in _split_params(match.group(1).replace("\\*", "*")):
        if piece == "/":
            names.clear()                                  # everything before / is positional-only
            continue
        if piece.startswith("**"):
            varkw = True
        elif piece.startswith("*"):
            continue
        else:
            name = re.match(r"^(?:[\w.]+\s+)?(\w+)\s*(?:=.*)?$", piece)
            if name and name.group(1) != "self":
                names.add(name.group(1))
    return names, varkw


def resolve(chain):
    """The CuPy object at cupy.<chain> (a dotted name), or None."""
    obj = cupy
    for part in chain.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def check_keywords(where, obj, keywords):
    params = parameters(obj)
    if params is None or not keywords:
        return []
    names, varkw = params
    bad = sorted(set(keywords) - names)
    return [] if varkw or not bad else [f"{where}: CuPy does not take keyword(s) {bad} (it takes {sorted(names)})"]


# ---- static: what the source calls ----------------------------------------------------------------------------
def _chain(node):
    """('cupy' | 'xp', 'a.b.c') for an attribute chain rooted at cp/cupy/xp/cupy_module(), else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not parts:
        return None
    if isinstance(node, ast.Name) and node.id in ("cp", "cupy", "xp"):
        root = "xp" if node.id == "xp" else "cupy"
    elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)) \
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "cupy_module":
        root = "cupy"
    else:
        return None
    return root, ".".join(reversed(parts))


def static_uses():
    """{(root, chain): (set of keyword names, 'file:line')} over the sources."""
    uses = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            found = _chain(node)
            if found is None:
                continue
            call = calls.get(id(node))
            keywords = {k.arg for k in call.keywords if k.arg} if call is not None else set()
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            kws, first = uses.get(found, (set(), where))
            uses[found] = (kws | keywords, first)
    # keep only the longest chains (cp.cuda.runtime.getDevice, not also cp.cuda and cp.cuda.runtime)
    chains = {c for _, c in uses}
    return {k: v for k, v in uses.items() if not any(other.startswith(k[1] + ".") for other in chains)}


def test_every_cupy_name_and_keyword_in_the_source_exists_in_cupy():
    problems, checked = [], 0
    for (root, chain), (keywords, where) in sorted(static_uses().items()):
        if root == "xp" and chain in NUMPY_ONLY:
            continue
        obj = resolve(chain)
        if obj is None:
            problems.append(f"{where}: cupy.{chain} does not exist in CuPy {cupy.__version__}")
            continue
        checked += 1
        problems += check_keywords(f"{where}: cupy.{chain}", obj, keywords)
    assert checked > 30, f"only {checked} CuPy names found in the source: the scan is broken"
    assert check_keywords("probe", cupy.asarray, {"dtype", "bogus"}) and not check_keywords("probe", cupy.asarray, {"dtype"})
    assert check_keywords("probe", cupy.ndarray.sum, {"where"}) and resolve("random.Generator.permutation") is None
    assert not problems, "\n".join(problems)


# ---- dynamic: what a cuda step calls under the emulator -------------------------------------------------------
def _emulator():
    spec = importlib.util.spec_from_file_location("kernel_emulator", Path(__file__).with_name("kernel_emulator.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_cupy_call_of_an_emulated_cuda_step_exists_in_cupy(monkeypatch):
    emulator = _emulator()
    if not emulator.available():
        pytest.skip("kernel emulator: g++ is not installed")
    import tinylazy as tl
    import tinylazy.nn.functional as F
    from tinylazy import _devcheck, backend, nn, optim
    from tinylazy.fast import kernels as _kernels
    monkeypatch.setattr(backend, "_cupy", emulator.FakeCupy())
    for cache in ("_MODULES", "_FUNCTIONS", "_SM_COUNT", "_TABLES"):
        monkeypatch.setattr(_kernels, cache, {})
    monkeypatch.setattr(_devcheck, "_ERRORS", {})
    monkeypatch.setattr(_devcheck, "_ARMED", set())
    monkeypatch.delenv("TINYLAZY_KERNELS", raising=False)
    tl.manual_seed(0)
    emulator.CALLS.clear()
    try:
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.LazyLinear(16), nn.GELU(), nn.Dropout(0.1), nn.Linear(16, 10)).to("cuda")
        x, y = tl.randn(4, 1, 8, 8, device="cuda"), tl.randint(0, 10, (4,), device="cuda")
        for opt in (optim.Adam(net.parameters(), lr=1e-3, amsgrad=True), optim.SGD(net.parameters(), lr=0.1, momentum=0.9)):
            for _ in range(2):
                opt.zero_grad()
                F.cross_entropy(net(x), y, label_smoothing=0.1).backward()
                opt.step()
        F.embedding(tl.tensor([0, 2], device="cuda"), tl.randn(3, 4, device="cuda", requires_grad=True)).sum().backward()
        F.nll_loss(F.log_softmax(tl.randn(3, 4, 2, device="cuda"), 1), tl.tensor([[0, 1], [2, 3], [1, -100]], device="cuda"))
        tl.randperm(9, device="cuda")
        tl.cuda.check_errors()
    finally:
        tl.manual_seed(0)
    problems = []
    for kind, name, keywords in sorted(emulator.CALLS):
        if kind == "ndarray":
            obj, where = getattr(cupy.ndarray, name, None), f"cupy.ndarray.{name}"
        elif kind == "random":
            obj, where = getattr(cupy.random.Generator, name, None), f"cupy.random.Generator.{name}"
        else:                                             # "cupy" functions and "ufunc" (add, add.at, ...)
            obj, where = resolve(name), f"cupy.{name}"
        if obj is None:
            problems.append(f"{where} does not exist in CuPy {cupy.__version__}")
            continue
        problems += check_keywords(where, obj, keywords)
    assert len(emulator.CALLS) > 20
    assert not problems, "\n".join(problems)


# ---- the emulator's fakes against the real objects ------------------------------------------------------------
def test_the_emulator_is_as_strict_as_cupy():
    emulator = _emulator()
    real_dev, fake_dev = cupy.cuda.Device(0), emulator.Device(0)
    for dev in (real_dev, fake_dev):
        with pytest.raises(TypeError):
            hash(dev)
        with pytest.raises(TypeError):
            operator.index(dev)
        assert int(dev) == 0 and dev.id == 0
    assert cupy.ndarray.__hash__ is None and emulator.EmuArray.__hash__ is None
    assert not hasattr(cupy.ndarray, "__index__") and not hasattr(emulator.EmuArray, "__index__")
    for name in ("permutation", "normal", "choice", "shuffle"):
        assert not hasattr(cupy.random.Generator, name) and not hasattr(emulator.Generator, name)
    for name in dir(emulator.Generator):                 # the fake has no method the real one lacks
        if not name.startswith("_"):
            assert hasattr(cupy.random.Generator, name), name
    for fake, real in ((emulator.Generator, cupy.random.Generator), (emulator.XORWOW, cupy.random.XORWOW),
                       (emulator.RawModule, cupy.RawModule), (emulator.Device, cupy.cuda.Device)):
        fake_names, _ = parameters(fake)
        real_names = parameters(real)
        assert real_names is not None, real
        assert fake_names <= real_names[0], (fake, fake_names - real_names[0])
    for method in ("get", "random", "standard_normal", "integers", "uniform"):
        fake = getattr(emulator.EmuArray if method == "get" else emulator.Generator, method)
        real = getattr(cupy.ndarray if method == "get" else cupy.random.Generator, method)
        assert parameters(fake)[0] <= parameters(real)[0], method
    # RawKernel.__call__(self, grid, block, args, **kwargs), documented as (grid, block, args, *, shared_mem=0)
    assert parameters(emulator._Kernel.__call__)[0] <= {"grid", "block", "args", "shared_mem"}
    assert np.dtype(cupy.float32) == np.float32
