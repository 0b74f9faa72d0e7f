"""The host allocator tuning (tinylazy/_malloc.py): importing tinylazy leaves glibc alone; the first optimizer
turns it on, unless TINYLAZY_MALLOC_TUNING=0."""
import os
import subprocess
import sys

import pytest

import tinylazy._malloc as malloc

CODE = """
import unittest.mock as m
with m.patch('ctypes.CDLL') as cdll:
    import tinylazy as tl, tinylazy._malloc as malloc
    on_import = cdll.called
    model = tl.nn.Linear(3, 2)
    after_model = cdll.called
    tl.optim.SGD(model.parameters(), lr=0.1)
    after_optimizer = cdll.return_value.mallopt.call_count
    tl.optim.Adam(model.parameters())
    after_second = cdll.return_value.mallopt.call_count
print(on_import, after_model, after_optimizer, after_second)
"""


def test_tuning_takes_on_linux_with_glibc():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning applies on Linux only")
    assert malloc.tune_host_allocator() is True


@pytest.mark.parametrize("env, expected", [("1", "False False 2 2"), ("0", "False False 0 0")])
def test_the_first_optimizer_tunes_once_and_the_env_switch_turns_it_off(env, expected):
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning applies on Linux only")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True,
                         env={**os.environ, "TINYLAZY_MALLOC_TUNING": env})
    assert out.stdout.strip() == expected


def test_old_name_in_backend_still_works():
    import tinylazy.backend as backend
    assert backend.tune_host_allocator is malloc.tune_host_allocator
