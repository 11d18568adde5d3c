"""Small shared helpers: atomic writes of files and directories."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_write_text", "write_dataset"]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and a failure leaves the previous
    content (or nothing) in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``path`` on success.

    On any exception the temporary directory is removed and ``path`` is left
    as it was, so no half-written store is ever visible.

    Parameters
    ----------
    path
        Final location of the directory (e.g. a zarr store).
    overwrite
        Replace an existing directory at ``path`` once the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(path)
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        ds.to_netcdf(tmp)
        tmp.replace(path)
        return path
    enc = {chunk_var: {"chunks": (1, *ds[chunk_var].shape[1:])}}
    with atomic_dir(path) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=False, encoding=enc, zarr_format=3)
    return path
