"""Fault tests: run a writer in a subprocess that SIGKILLs itself midway, then look at the files.

Used by the ``test_faults_*.py`` modules. The parent (pytest) side:

- :func:`run_killed` runs a snippet in ``sys.executable -c`` (with this
  module importable as ``_faults``) and asserts the subprocess died of
  ``SIGKILL`` at one of the kill points below (it prints a marker first);
- :func:`tree` is the fingerprint of a file or folder: ``{relative path:
  sha256 of the contents}`` (``None`` when nothing is there), so "the old
  output is intact" is ``tree(path) == before``;
- :func:`leftovers` lists the hidden temporaries beside an output.

The subprocess side, called from the snippet before the writer runs, wraps
one function so that one of its calls does part of its work and then kills
the process: :func:`kill_at` (any function; :func:`arm_at` arms a kill for
one call only), :func:`kill_in_chunk_write`
(the n-th file a zarr ``LocalStore`` writes, half written),
:func:`kill_in_file_write` (a file opened for writing, half written).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent

#: Skip marker of every fault test: the process kills itself with SIGKILL (POSIX only).
needs_sigkill = pytest.mark.skipif(
    os.name != "posix" or not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL"
)

MARKER = "FAULT-TEST: killing at"

# ----------------------------------------------------------------- parent side


def run_killed(
    code: str, *, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; assert it was SIGKILLed at a kill point.

    ``env`` adds environment variables (e.g. ``TMPDIR``).
    """
    prelude = f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom _faults import *\n"
    env = {
        **os.environ,
        **(env or {}),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    res = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    out = f"rc={res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-5000:]}"
    assert res.returncode == -signal.SIGKILL, out
    assert MARKER in res.stderr, out
    return res


def tree(path: str | Path) -> dict[str, str] | None:
    """Return ``{relative path: sha256}`` of every file under ``path`` (a file: ``{"": sha}``).

    Folders are listed too (value ``"dir"``), so an empty folder that appears
    or disappears counts; ``None`` when nothing is at ``path``.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(path: str | Path) -> list[str]:
    """Names of the hidden siblings (``.NAME.*``) that writes of ``path`` left beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


# ------------------------------------------------------------- subprocess side


def die(where: str) -> None:
    """Print the marker and SIGKILL this process (no cleanup of any kind runs)."""
    sys.stdout.flush()
    sys.stderr.write(f"{MARKER} {where}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at(
    owner: Any,
    name: str,
    *,
    call: int = 1,
    when: Callable[..., bool] | None = None,
    before: Callable[..., Any] | None = None,
) -> None:
    """Replace ``owner.name`` so that its ``call``-th matching call kills the process.

    A call matches when ``when(*args, **kwargs)`` is true (every call without
    ``when``). The killing call first runs ``before(real, *args, **kwargs)``
    (e.g. to do half of the work), then dies without calling the real function.
    """
    real = getattr(owner, name)
    seen = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when is None or when(*args, **kwargs):
            seen[0] += 1
            if seen[0] == call:
                if before is not None:
                    before(real, *args, **kwargs)
                die(f"{getattr(owner, '__name__', owner)}.{name} call {call}")
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)


def arm_at(
    owner: Any,
    name: str,
    arm: Callable[[], Any],
    *,
    call: int = 1,
    when: Callable[..., bool] | None = None,
) -> None:
    """Replace ``owner.name`` so that its ``call``-th matching call runs ``arm()`` first.

    Then the real function runs; ``arm`` sets up the kill inside it (e.g.
    :func:`kill_in_chunk_write` on the second block only).
    """
    real = getattr(owner, name)
    seen = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when is None or when(*args, **kwargs):
            seen[0] += 1
            if seen[0] == call:
                arm()
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)


def kill_in_chunk_write(n: int, part: str = "") -> None:
    """Kill the process in the ``n``-th file that a zarr local store writes.

    Only files whose path contains ``part`` count (e.g. ``"/samples/c/"``: the
    chunks of one array). Half of that file's bytes reach the disk (in place,
    not through zarr's own temporary file), as when a process dies in the
    middle of a write.
    """
    import zarr.storage._local as local

    def half(real: Any, path: Path, value: Any, *args: Any, **kwargs: Any) -> None:
        data = bytes(value.as_buffer_like())
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data[: len(data) // 2])

    def when(path: Path, *args: Any, **kwargs: Any) -> bool:
        return part in str(path)

    kill_at(local, "_put", call=n, when=when, before=half)


def kill_in_file_write(match: Callable[[str], bool], call: int = 1) -> None:
    """Kill the process in the ``call``-th ``write`` to a file whose name ``match``es.

    The file is opened through the builtin ``open`` or ``io.open`` (as
    :mod:`pathlib` does), text or binary; half of the data of the killing
    write reaches the file.
    """
    import builtins
    import io

    real_open = builtins.open
    seen = [0]

    class Half:
        def __init__(self, fh: Any, name: str) -> None:
            self._fh, self._name = fh, name

        def write(self, data: Any) -> Any:
            seen[0] += 1
            if seen[0] == call:
                self._fh.write(data[: len(data) // 2])
                self._fh.flush()
                die(f"write to {self._name}")
            return self._fh.write(data)

        def __getattr__(self, attr: str) -> Any:
            return getattr(self._fh, attr)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            self._fh.__exit__(*exc)

    def opener(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        if isinstance(file, str | os.PathLike) and any(c in mode for c in "wax"):
            name = os.fspath(file)
            if match(os.path.basename(name)):
                return Half(fh, name)
        return fh

    builtins.open = io.open = opener
