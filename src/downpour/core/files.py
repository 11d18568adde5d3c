"""Atomic writers: text and bytes files, whole directories, datasets (NetCDF or zarr v3).

Every writer builds its output in a temporary sibling of the destination and
renames it into place only when complete. Whatever stops the writing process
(an exception, Ctrl-C, ``SIGKILL``, the out-of-memory killer), the destination
then holds the previous complete version, the new complete one, or nothing
when there was none before; never a half-written one.

Temporary siblings are named ``.NAME.HOST-PID-START-XXXXXXXX.tmp`` (``START``:
the writer's start time, so that a reused process id does not count as the
same writer). The next write of the same path removes those left behind by
writers that died (same host, process no longer running); temporaries of a
live writer or of another host are left alone.

Files are replaced by one :func:`os.replace`, which is atomic. A directory
(a zarr store, a state folder) that already exists is swapped with the new
one in one step on Linux (``renameat2`` with ``RENAME_EXCHANGE``); then the
old one, now under the temporary name, is removed. Where that is not
available (other systems, or a filesystem such as NFS that refuses it) the
old directory is first renamed aside to ``.NAME.HOST-PID-START-XXXXXXXX.old`` and
then the new one onto the path. A process killed between those two renames
leaves nothing at the path and the complete old version in the ``.old``
sibling: this is the one window, two rename calls long. :func:`recover` (run
by every later write of that path) moves the old version back.

Contents of files are flushed to disk (``fsync``) before the rename; the many
files of a directory tree are not, so a store survives a killed process but
not necessarily a power cut in the seconds after it was written.

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> with atomic_dir(folder / "out") as tmp:
...     _ = (tmp / "a.txt").write_text("new")
>>> sorted(p.name for p in folder.iterdir())
['out']
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "recover",
    "scratch_dir",
    "write_dataset",
]

_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _start_time(pid: int) -> str | None:
    """Start time of process ``pid`` (Linux ``/proc``; ``"0"`` elsewhere), None if it is gone.

    With the process id it names one process for good: a later process that
    gets the same id (a restarted container, say) has another start time.
    """
    if not sys.platform.startswith("linux"):
        return "0"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]  # field 22, starttime


def _prefix(path: Path) -> str:
    """Start of the temporary names of ``path`` made by this process (asked anew: forks)."""
    pid = os.getpid()
    return f".{path.name}.{_HOST}-{pid}-{_start_time(pid) or '0'}-"


def _siblings(path: Path) -> Iterator[tuple[Path, str]]:
    """Yield ``(sibling, kind)``: temporaries (``tmp``), olds of ``path`` whose writer is gone."""
    pattern = re.compile(
        rf"\.{re.escape(path.name)}\.(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-(?P<start>\d+)"
        r"-[a-z0-9_]+\.(?P<kind>tmp|old)"
    )
    try:
        entries = sorted(path.parent.iterdir())
    except FileNotFoundError:
        return
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and not _alive(m["host"], int(m["pid"]), m["start"]):
            yield p, m["kind"]


def _alive(host: str, pid: int, start: str) -> bool:
    """Whether the writer ``host``/``pid``/``start`` may still run (unknown counts as alive)."""
    if host != _HOST or os.name != "posix":
        return True
    now = _start_time(pid)
    if now is not None and now != "0":  # seen in /proc: the same process, or a reused id
        return now == start
    if pid == os.getpid():
        return True
    try:  # not in /proc (gone, or hidden: hidepid) or no /proc
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: the process exists
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def recover(path: str | Path) -> Path:
    """Undo what killed writes of ``path`` left behind; return ``path``.

    Temporaries of dead writers are removed. If ``path`` is missing because a
    writer died between setting the old directory aside and renaming the new
    one in (see the module docstring), the old directory is moved back.
    """
    path = Path(path)
    olds = []
    for p, kind in _siblings(path):
        if kind == "old":
            olds.append(p)
        else:
            _remove(p)
    if olds and not os.path.lexists(path):
        newest = max(olds, key=lambda p: p.stat().st_mtime_ns)
        with contextlib.suppress(OSError):  # e.g. another writer put a new version there
            os.replace(newest, path)
            olds.remove(newest)
    for p in olds:
        _remove(p)
    return path


def _umask() -> int:
    """Return the process's umask (read without changing it where ``/proc`` tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp(path: Path, directory: bool) -> Path:
    """Create a temporary sibling of ``path`` (after :func:`recover`).

    It gets the permissions of a file or folder created plainly (``mkstemp``
    and ``mkdtemp`` make them private), since it becomes the output.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
        return tmp
    fd, name = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; it replaces ``path`` on success.

    Write the whole file to the yielded path (it exists, empty). On any
    exception it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _temp(path, directory=False)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and a failure leaves the previous
    content (or nothing) in place.
    """
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


@contextlib.contextmanager
def scratch_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary working directory beside ``path``, removed at the end.

    It carries the temporary name of ``path``, so a later write of ``path``
    removes it if this process dies.
    """
    tmp = _temp(Path(path), directory=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one step; False where the system or filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put the complete directory ``tmp`` at ``path``, where a previous version exists."""
    if _exchange(tmp, path):
        _remove(tmp)  # now the old version
        return
    old = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".old", dir=path.parent))
    old.rmdir()  # a unique free name (``path`` may be a file)
    os.replace(path, old)  # the window: path is missing until the next line (see `recover`)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``path`` on success.

    On any exception the temporary directory is removed and ``path`` is left
    as it was, so no half-written store is ever visible; a killed process
    leaves it as it was too (see the module docstring for the one window).

    Parameters
    ----------
    path
        Final location of the directory (e.g. a zarr store).
    overwrite
        Replace an existing directory at ``path`` once the new one is complete.
    """
    path = Path(path)
    tmp = _temp(path, directory=True)
    try:
        yield tmp
        if os.path.lexists(path):
            if not overwrite:
                raise FileExistsError(path)
            _replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_dataset(ds: Any, path: str | Path, fmt: str, chunk_var: str) -> Path:
    """Write an ``xr.Dataset`` atomically as NetCDF or zarr v3 (one chunk per leading index).

    Parameters
    ----------
    ds
        The dataset.
    path
        Output file (NetCDF) or directory (zarr).
    fmt
        ``"zarr"`` or ``"netcdf"``.
    chunk_var
        Variable chunked as ``(1, *rest)`` in zarr (e.g. one event or lead time per chunk).
    """
    path = Path(path)
    if fmt == "netcdf":
        with atomic_file(path) as tmp:
            ds.to_netcdf(tmp)
        return path
    enc = {chunk_var: {"chunks": (1, *ds[chunk_var].shape[1:])}}
    with atomic_dir(path) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=False, encoding=enc, zarr_format=3)
    return path
