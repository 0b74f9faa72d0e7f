"""The host allocator tuning (tinylazy/_malloc.py) is explicit: importing tinylazy leaves glibc alone."""
import os
import subprocess
import sys

import pytest

import tinylazy._malloc as malloc

CODE = """
import unittest.mock as m
with m.patch('ctypes.CDLL') as cdll:
    import tinylazy, tinylazy._malloc as malloc
    on_import = cdll.called
    malloc.tune_from_env()
print(on_import, cdll.called)
"""


def test_tuning_takes_on_linux_with_glibc():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning applies on Linux only")
    assert malloc.tune_host_allocator() is True


@pytest.mark.parametrize("env, expected", [("1", "False True"), ("0", "False False")])
def test_import_never_tunes_and_the_env_switch_turns_tune_from_env_off(env, expected):
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning applies on Linux only")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True,
                         env={**os.environ, "TINYLAZY_MALLOC_TUNING": env})
    assert out.stdout.strip() == expected


def test_old_name_in_backend_still_works():
    import tinylazy.backend as backend
    assert backend.tune_host_allocator is malloc.tune_host_allocator
