"""tl.save on the file system: killed saves leave nothing behind for long, symlinks are written through,
permission bits and owners are kept, and a target this user may not write to is refused."""
import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import tinylazy as tl
from tinylazy.serialization import files
from checkpoint_forge import MAGIC

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def _temps(folder, name="ckpt"):
    return sorted(p.name for p in folder.glob(f".{name}.*.tmp"))


def _value(path):
    return tl.load(path)["v"].tolist()


# --- killed saves -----------------------------------------------------------------------------------------
SLOW_SAVE = r"""
import sys, time
import tinylazy as tl
from tinylazy.serialization import writer
write = writer._write_array
def slow(fh, data):                   # write the first array, say so, then stall: the parent kills us here
    write(fh, data)
    fh.flush()
    print("writing", flush=True)
    time.sleep(120)
writer._write_array = slow
tl.save({"v": tl.ones(50_000), "w": tl.zeros(10)}, sys.argv[1])
"""


def test_saves_killed_by_sigkill_are_cleaned_by_the_next_save(tmp_path):
    path = tmp_path / "ckpt"
    tl.save({"v": tl.tensor([1.0])}, path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    procs = [subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(path)], stdout=subprocess.PIPE, env=env)
             for _ in range(3)]
    try:
        for p in procs:
            assert p.stdout.readline() == b"writing\n"
        writing = _temps(tmp_path)
        assert len(writing) == 3 and all((tmp_path / n).stat().st_size > 100_000 for n in writing)

        tl.save({"v": tl.tensor([2.0])}, path)            # all three are being written: none is touched
        assert _temps(tmp_path) == writing and _value(path) == [2.0]

        for p in procs[:2]:
            p.send_signal(signal.SIGKILL)
            p.wait()
        assert _temps(tmp_path) == writing                 # a kill leaves its temporary file behind ...
        tl.save({"v": tl.tensor([3.0])}, path)             # ... which the next save to this path removes
        alive = _temps(tmp_path)
        assert len(alive) == 1 and alive[0] in writing and _value(path) == [3.0]
        assert procs[2].poll() is None                     # still writing, so its file was kept

        procs[2].send_signal(signal.SIGKILL)
        procs[2].wait()
        tl.save({"v": tl.tensor([4.0])}, path)
        assert _temps(tmp_path) == [] and os.listdir(tmp_path) == ["ckpt"] and _value(path) == [4.0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()


def test_only_our_own_stale_temp_files_are_removed(tmp_path):
    path = tmp_path / "ckpt"
    ours = {".ckpt.0123456789ab.tmp": MAGIC + b"\0" * 100,       # killed while writing
            ".ckpt.aaaaaaaaaaaa.tmp": b"",                       # killed before its first byte
            ".ckpt.bbbbbbbbbbbb.tmp": MAGIC[:3]}
    kept = {".ckpt.cccccccccccc.tmp": b"not a checkpoint",      # someone else's file
            ".ckpt.xyz.tmp": MAGIC, ".ckpt.0123456789AB.tmp": MAGIC, ".ckpt.0123456789abc.tmp": MAGIC,
            ".ckpt.0123456789ab.tmp.bak": MAGIC, ".other.0123456789ab.tmp": MAGIC, "ckpt.0123456789ab.tmp": MAGIC,
            ".ckpt.dddddddddddd.tmp": MAGIC}                     # locked below: a save is writing it
    for name, content in {**ours, **kept}.items():
        (tmp_path / name).write_bytes(content)
    os.symlink(tmp_path / ".ckpt.0123456789ab.tmp.bak", tmp_path / ".ckpt.eeeeeeeeeeee.tmp")  # a link: not ours
    kept[".ckpt.eeeeeeeeeeee.tmp"] = MAGIC
    if os.geteuid() == 0:                                        # another user's file (only root can make one)
        (tmp_path / ".ckpt.ffffffffffff.tmp").write_bytes(MAGIC)
        os.chown(tmp_path / ".ckpt.ffffffffffff.tmp", NOBODY, NOBODY)
        kept[".ckpt.ffffffffffff.tmp"] = MAGIC
    import fcntl
    with open(tmp_path / ".ckpt.dddddddddddd.tmp", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        tl.save({"v": tl.tensor([1.0])}, path)
    assert sorted(os.listdir(tmp_path)) == sorted([*kept, "ckpt"])
    for name, content in kept.items():
        assert (tmp_path / name).read_bytes() == content


def test_the_temporary_file_is_locked_while_it_is_written(tmp_path, monkeypatch):
    """What makes the rule safe: during a save its temporary file cannot be taken by a cleaner."""
    from tinylazy.serialization import writer
    seen = []

    def spy(fh, data):
        (tmp,) = _temps(tmp_path)
        seen.append(files.remove_stale_temps(str(tmp_path / "ckpt")))   # another save's cleanup, right now
        assert _temps(tmp_path) == [tmp]
        fh.write(memoryview(data))

    monkeypatch.setattr(writer, "_write_array", spy)
    tl.save({"v": tl.tensor([1.0])}, tmp_path / "ckpt")
    assert seen == [[]] and _value(tmp_path / "ckpt") == [1.0] and _temps(tmp_path) == []


# --- symlinks, permissions, owners ------------------------------------------------------------------------
def test_save_writes_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / "ckpt", tmp_path / "link"
    tl.save({"v": tl.tensor([1.0])}, target)
    os.symlink("real/ckpt", link)                                # relative, into another folder
    (tmp_path / "real" / ".ckpt.0123456789ab.tmp").write_bytes(MAGIC)   # a killed save's leftover
    tl.save({"v": tl.tensor([2.0])}, link)
    assert link.is_symlink() and os.readlink(link) == "real/ckpt"
    assert _value(target) == [2.0] and _value(link) == [2.0]
    assert os.listdir(tmp_path / "real") == ["ckpt"] and sorted(os.listdir(tmp_path)) == ["link", "real"]
    os.symlink("real/new", tmp_path / "dangling")                # as open(path, "wb"): creates the target
    tl.save({"v": tl.tensor([3.0])}, tmp_path / "dangling")
    assert (tmp_path / "dangling").is_symlink() and _value(tmp_path / "real" / "new") == [3.0]


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o604, 0o444, 0o755])
def test_overwrite_keeps_permission_bits(tmp_path, mode):
    path = tmp_path / "ckpt"
    tl.save({"v": tl.tensor([1.0])}, path)
    os.chmod(path, mode)
    if not os.access(path, os.W_OK):
        pytest.skip("a read-only file is refused for non-root users: test_read_only_target_* covers it")
    tl.save({"v": tl.tensor([2.0])}, path)
    assert stat.S_IMODE(path.stat().st_mode) == mode and _value(path) == [2.0]


def test_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        tl.save({"v": tl.tensor([1.0])}, tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_overwrite_keeps_the_owner_when_root(tmp_path):
    path = tmp_path / "ckpt"
    tl.save({"v": tl.tensor([1.0])}, path)
    os.chown(path, NOBODY, NOBODY)
    tl.save({"v": tl.tensor([2.0])}, path)
    assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY) and _value(path) == [2.0]


def test_read_only_target_as_open_would_treat_it(tmp_path):
    """tl.save refuses exactly when open(path, "wb") would: for a non-root user a 0o444 file is refused and
    left as it was; root may write any file (so may torch.save), and then the file keeps its 0o444."""
    path = tmp_path / "ckpt"
    tl.save({"v": tl.tensor([1.0])}, path)
    before = path.read_bytes()
    os.chmod(path, 0o444)
    try:
        open(path, "r+b").close()
        open_allowed = True
    except PermissionError:
        open_allowed = False
    if open_allowed:
        tl.save({"v": tl.tensor([2.0])}, path)
        assert _value(path) == [2.0] and stat.S_IMODE(path.stat().st_mode) == 0o444
    else:
        with pytest.raises(PermissionError, match="not writable by this user"):
            tl.save({"v": tl.tensor([2.0])}, path)
        assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt"]


def _saves(folder):
    """Three saves: a read-only file, a writable one, and a symlink to the read-only one."""
    out = []
    for name, value in (("readonly", 2.0), ("writable", 3.0), ("link", 4.0)):
        try:
            tl.save({"v": tl.tensor([value])}, folder / name)
            out.append(f"{name} saved")
        except PermissionError as e:
            out.append(f"{name} refused: {e}")
    return out


def _as_nobody(fn):
    """fn() run in a forked child as the user 'nobody' (the interpreter and tinylazy are already loaded,
    so nothing needs to be readable by that user); -> its result as a list of strings."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                                 # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            except OSError as e:
                out = [f"setuid failed: {e}"]
            else:
                out = fn()
            os.write(write, "\n".join(out).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        out = fh.read().decode().split("\n")
    assert os.waitpid(pid, 0)[1] == 0, out
    if out[0].startswith("setuid failed"):
        pytest.skip(f"root without the right to become another user ({out[0]}); "
                    "test_read_only_target_as_open_would_treat_it still ran")
    return out


def test_read_only_target_is_refused_for_a_non_root_user(tmp_path):
    """The refusal itself, as a non-root user sees it: when the tests run as root, the saves run in a forked
    child as the user 'nobody' (uid 65534), in a folder that user owns."""
    folder = Path(tempfile.mkdtemp(prefix="tl-ckpt-")) if os.geteuid() == 0 else tmp_path
    try:
        for name in ("readonly", "writable"):
            tl.save({"v": tl.tensor([1.0])}, folder / name)
        os.symlink("readonly", folder / "link")
        os.chmod(folder / "readonly", 0o444)
        before = (folder / "readonly").read_bytes()
        if os.geteuid() == 0:
            for p in (folder, folder / "readonly", folder / "writable"):
                os.chown(p, NOBODY, NOBODY)
            lines = _as_nobody(lambda: _saves(folder))
        else:
            lines = _saves(folder)
        assert [line.split(":")[0] for line in lines] == ["readonly refused", "writable saved", "link refused"], lines
        assert "readonly' is not writable by this user" in lines[0]
        assert "(the target of " in lines[2] and "/link" in lines[2]
        assert (folder / "readonly").read_bytes() == before and _value(folder / "writable") == [3.0]
        assert sorted(os.listdir(folder)) == ["link", "readonly", "writable"]      # no temporary file left
    finally:
        if folder != tmp_path:
            for name in os.listdir(folder):
                os.unlink(folder / name)
            os.rmdir(folder)


def test_special_targets(tmp_path):
    """A FIFO (like /dev/null, a device) is written in place, not replaced; a folder raises."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        tl.save({"v": tl.tensor([5.0])}, fifo)                 # small: fits in the pipe's buffer
        blob = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    (tmp_path / "copy").write_bytes(blob)
    assert _value(tmp_path / "copy") == [5.0]
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        tl.save({"v": tl.tensor([1.0])}, tmp_path / "dir")
    assert sorted(os.listdir(tmp_path)) == ["copy", "dir", "pipe"] and os.listdir(tmp_path / "dir") == []
