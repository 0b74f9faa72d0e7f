"""The package as users get it: the sdist and the wheel made from it (what `python -m build` does) carry
every CUDA source of kernels/, and an installed (non-editable) copy finds them through
`tinylazy.cuda.kernel_dir()`.

The builds run the PEP 517 hooks of setuptools directly (`python -m build --no-isolation` calls the same
ones), in a copy of the repository's tracked files, so the working tree gets no build/ or egg-info.
"""
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILES = sorted(p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cu", ".cuh"))


def _hook(cwd, code):
    out = subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; " + code], cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist path, wheel path, install folder) built from a copy of the tracked (and new) files."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    tmp = tmp_path_factory.mktemp("pkg")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the tracked files")
    src = tmp / "src"
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if path.is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(path.read_bytes())
    dist = tmp / "dist"
    sdist = dist / _hook(src, f"print(b.build_sdist({str(dist)!r}))")
    with tarfile.open(sdist) as tar:                      # the wheel is built from the unpacked sdist, as by build
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp / "unpacked", filter="data")
        else:                                             # Python before 3.10.12 / 3.11.4: no filters
            tar.extractall(tmp / "unpacked")
    unpacked = next((tmp / "unpacked").iterdir())
    wheel = dist / _hook(unpacked, f"print(b.build_wheel({str(dist)!r}))")
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as z:                     # a pure-Python wheel installs by unpacking it
        z.extractall(site)
    return sdist, wheel, site


def test_kernel_sources_are_listed():
    assert {"common.cuh", "elementwise.cu", "optim.cu", "dropout.cu", "softmax_xent.cu", "checks.cu"} <= set(KERNEL_FILES)


def test_sdist_and_wheel_carry_every_kernel_source(built):
    sdist, wheel, _ = built
    with tarfile.open(sdist) as tar:
        in_sdist = {Path(n).name for n in tar.getnames() if "/kernels/" in n}
    with zipfile.ZipFile(wheel) as z:
        in_wheel = {Path(n).name for n in z.namelist() if n.startswith("tinylazy/kernels/")}
        names = z.namelist()
    assert set(KERNEL_FILES) <= in_sdist
    assert set(KERNEL_FILES) <= in_wheel
    assert any(n.startswith("tinylazy/data/") and n.endswith(".gz") for n in names)     # the bundled subset too


def test_installed_package_finds_its_kernels(built):
    _, _, site = built
    code = ("import tinylazy, tinylazy.cuda as c, tinylazy.fast.kernels as k; print(tinylazy.__file__); "
            "print(c.kernel_dir()); print(len(k.source('optim.cu')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=site, env={"PYTHONPATH": str(site), "PATH": ""},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    package, folder, size = out.stdout.split("\n")[:3]
    assert Path(package).parent == site / "tinylazy"                 # the installed copy, not the repository
    assert Path(folder) == site / "tinylazy" / "kernels"
    assert sorted(p.name for p in Path(folder).iterdir() if p.suffix in (".cu", ".cuh")) == KERNEL_FILES
    assert int(size) > 1000
