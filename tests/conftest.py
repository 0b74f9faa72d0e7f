"""Test fixtures: `device` runs a test on cpu always and on cuda when a GPU is present (skipped with the
reason printed otherwise). TINYLAZY_TEST_DEVICE=cuda (or cpu) restricts the run to that device.

Hypothesis draws new examples on every local run; with CI set it replays a fixed sequence, so that a CI
result does not depend on the draw (a case it finds locally is then fixed and pinned by a test)."""
import os
from collections import Counter

import pytest
from hypothesis import settings

import tinylazy as tl

if os.environ.get("CI"):
    settings.register_profile("ci", derandomize=True)
    settings.load_profile("ci")


def _devices():
    only = os.environ.get("TINYLAZY_TEST_DEVICE")
    return [only] if only else ["cpu", "cuda"]


@pytest.fixture(params=_devices())
def device(request):
    if request.param.startswith("cuda") and not tl.cuda.is_available():
        pytest.skip("cuda: no GPU or no CuPy on this machine")
    return request.param


@pytest.fixture(autouse=True)
def _seed_and_restore():
    """Every test starts from seed 0 and the default dtype float32, and leaves them so."""
    tl.manual_seed(0)
    yield
    tl.set_default_dtype(tl.float32)


def _skip_reason(report):
    """The reason a test was skipped, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def pytest_terminal_summary(terminalreporter):
    """Say plainly which devices ran, and count the skips per reason (a missing torch is not a missing GPU),
    so that absent cases are never silently absent."""
    if tl.cuda.is_available():
        terminalreporter.write_line(f"tinylazy devices tested: {', '.join(_devices())} (GPUs: {tl.cuda.device_count()})")
    else:
        terminalreporter.write_line("tinylazy devices tested: cpu, meta (no GPU or no CuPy on this machine: "
                                    "the cuda cases are skipped)")
    reasons = Counter(_skip_reason(r) for r in terminalreporter.stats.get("skipped", []))
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"  {count} skipped: {reason}")
