"""Writing a checkpoint file safely: atomically, through symlinks, keeping permissions, leaving no litter.

`write_atomically(path, write)`:

1. The target is the symlink's target, resolved (`os.path.realpath`): the link stays a link, as with
   `torch.save`, which opens the path and so writes through it.
2. An existing target that is not a regular file (a device like /dev/null, a FIFO) is written in place, as
   `open(path, "wb")` would: renaming over it would replace the device itself.
3. An existing target this user may not write to raises PermissionError, as `open(path, "wb")` would (the
   rename in step 5 needs only the folder to be writable, which would silently defeat a read-only file).
4. Leftovers of killed saves to the same target are removed (`remove_stale_temps`, rule below).
5. The data goes to `.<name>.<12 hex digits>.tmp` in the target's folder, created exclusively and locked
   while it is written; it is flushed, fsynced, given the old file's permission bits, and renamed over the
   target; then the folder is fsynced, so that the rename survives a power cut. On any exception (a full
   disk, Ctrl-C) the temporary file is removed and the old file is left as it was.

The rule for leftovers: a file is removed only if its name is `.<name>.<12 hex digits>.tmp` for this very
target, it is a regular file owned by this user, its first bytes are (a prefix of) the checkpoint magic, and
no process holds its lock. Every save holds an exclusive `flock` on its temporary file until the rename, and
the kernel drops the lock when the process dies, even by SIGKILL; so a file whose lock can be taken is not
being written. (Without `fcntl`, on Windows, a file that is open cannot be deleted, which gives the same rule.)
"""
import os
import re
import secrets
import stat

from .fileformat import MAGIC

try:
    import fcntl
except ImportError:                      # Windows
    fcntl = None

_HEX12 = re.compile(r"[0-9a-f]{12}")


def _temp_name(target):
    folder, base = os.path.split(target)
    return os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")


def _create_temp(target, mode):
    """-> (fd, path) of a new temporary file next to `target`, exclusively created and locked."""
    while True:
        tmp = _temp_name(target)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:                 # a file system without locks: no cleaner can take the file either
            return fd, tmp
        try:                            # a cleaner may have removed it between the open and the lock
            if os.path.samestat(os.stat(tmp), os.fstat(fd)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def _open_if_stale(path):
    """An open descriptor of `path` holding its lock if it is a leftover of ours that no save is writing (the
    rule in the module docstring), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        ours = (stat.S_ISREG(st.st_mode) and (not hasattr(os, "geteuid") or st.st_uid == os.geteuid())
                and MAGIC.startswith(os.read(fd, len(MAGIC))))     # an empty file: killed before writing
        if ours and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)          # raises if a save holds the lock
        if ours:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def remove_stale_temps(target):
    """Remove the leftover temporary files of killed saves to `target`; returns their paths. Best effort:
    a file that cannot be removed is left alone, and never fails the save."""
    folder, base = os.path.split(target)
    prefix, removed = f".{base}.", []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp") and _HEX12.fullmatch(name[len(prefix):-4])):
            continue
        path = os.path.join(folder, name)
        fd = _open_if_stale(path)
        if fd is None:
            continue
        try:
            if fcntl is None:           # Windows deletes only closed files, and refuses while a save has it open
                os.close(fd)
                fd = None
            os.unlink(path)             # (POSIX: while we still hold its lock)
            removed.append(path)
        except OSError:
            pass
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _check_writable(target, path):
    if not os.access(target, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        via = "" if target == os.path.abspath(path) else f" (the target of {path!r})"
        raise PermissionError(13, f"tl.save: {target!r}{via} is not writable by this user; "
                                  "open(path, 'wb') and torch.save would fail too. Make it writable or save "
                                  "elsewhere", target)


def write_atomically(path, write):
    """Call `write(fh)` with a binary file whose contents replace `path` atomically (module docstring)."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(target, "wb") as fh:  # a device or FIFO: written in place (a directory raises here)
            write(fh)
        return
    if st is not None:
        _check_writable(target, path)
    remove_stale_temps(target)
    # An existing file's bits are set once the data is written; until then only this user can read it.
    fd, tmp = _create_temp(target, 0o666 if st is None else 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if st is not None:
                os.chmod(tmp, stat.S_IMODE(st.st_mode) & 0o777)
                _keep_owner(fh.fileno(), st)
            if fcntl is not None:
                os.replace(tmp, target)  # still holding the lock, so no cleaner can take the file first
        if fcntl is None:
            os.replace(tmp, target)      # Windows cannot rename an open file
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(os.path.dirname(target))


def _keep_owner(fd, st):
    """Give the new file the old one's owner and group where allowed (root; or a group this user is in)."""
    if hasattr(os, "fchown") and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid if os.geteuid() == 0 else -1, st.st_gid)
        except OSError:
            pass


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
