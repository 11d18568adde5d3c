"""The samples store: one owner for its layout, reading, writing and merging.

A samples store is a zarr directory or a NetCDF file with dims (event,
member, y, x) (:func:`samples_dataset`):

- ``samples`` (event, member, y, x) float32 in the store's units (NaN outside the mask);
- ``target`` (event, y, x): the real field of each event (for evaluation);
- ``mask`` (y, x); coordinates ``time`` (event), ``lat``/``lon``,
  ``checkpoint`` (member);
- attributes: checkpoints, mode, temperature, pixel_threshold, wet_rule,
  seed, split, members_per_checkpoint, days, period, store, units,
  wet_threshold, thresholds, ``for_evaluation_only``.

:func:`write_samples` writes a dataset at once, :func:`block_writer` block
by block (bounded memory); both make the store appear at its path only when
complete. :func:`merge_samples` joins shards sampled by time period.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.core.files import atomic_dir, atomic_file, scratch_dir, write_dataset

__all__ = [
    "MERGE_KEYS",
    "block_writer",
    "event_blocks",
    "merge_samples",
    "open_samples",
    "progress_bar",
    "samples_dataset",
    "samples_template",
    "write_samples",
]


def open_samples(path: str | Path) -> xr.Dataset:
    """Open a samples store (zarr directory or NetCDF file) lazily.

    A zarr store whose ``samples`` or ``target`` array lacks chunks (deleted,
    or a copy cut short) is refused: every event of a store written here holds
    values inside the mask, so a missing chunk would read silently as NaN.
    """
    path = Path(path)
    if not path.exists():
        raise DownpourError(f"samples store {path} not found; write one with `downpour sample`")
    try:
        if not path.is_dir():
            return xr.open_dataset(path)
        ds = xr.open_zarr(path, consolidated=False, chunks=None)
        missing = _missing_chunks(path)
    except Exception as exc:  # foreign or truncated stores raise many kinds
        raise DownpourError(
            f"samples store {path} cannot be read ({_first_line(exc)}); check that it is "
            "complete, or write it again with `downpour sample`"
        ) from None
    if missing:
        ds.close()
        raise DownpourError(
            f"samples store {path} is incomplete: {missing} are missing (deleted or not "
            "copied); copy it again or write it again with `downpour sample`"
        )
    return ds


def _first_line(exc: Exception) -> str:
    """``Type: first line`` of a backend's error, without xarray's advice on engines."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "did not find a match in any of xarray's currently installed IO backends" in text:
        return "not a NetCDF, HDF5 or zarr file"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _missing_chunks(path: Path) -> str:
    """Describe the chunks of ``samples`` and ``target`` absent from a zarr store ('' if none).

    zarr does not write a chunk that holds only the fill value (NaN), so a
    chunk that lies wholly outside the mask is legitimately absent; a missing
    chunk that covers any cell of the mask is damage.
    """
    import itertools

    import zarr

    group = zarr.open_group(path, mode="r")
    mask_arr = group.get("mask")
    mask = np.asarray(mask_arr[...], dtype=bool) if isinstance(mask_arr, zarr.Array) else None
    gone = []
    for name in ("samples", "target"):
        arr = group.get(name)
        if not isinstance(arr, zarr.Array) or int(arr.nchunks_initialized) == int(arr.nchunks):
            continue  # a missing variable is reported by the reader that needs it
        present = _chunk_coords(path / name)
        grid = [range(-(-n // c)) for n, c in zip(arr.shape, arr.chunks, strict=True)]
        missing = 0
        for coord in itertools.product(*grid):
            if coord in present:
                continue
            (cy, cx), (ny, nx) = coord[-2:], arr.chunks[-2:]
            if mask is None or mask[cy * ny : (cy + 1) * ny, cx * nx : (cx + 1) * nx].any():
                missing += 1
        if missing:
            gone.append(f"{missing} of the {arr.nchunks} chunks of {name!r}")
    return " and ".join(gone)


def _chunk_coords(folder: Path) -> set[tuple[int, ...]]:
    """Return the chunk coordinates present in a zarr v3 array folder (``c/i/j/...`` keys)."""
    root = folder / "c"
    out: set[tuple[int, ...]] = set()
    if not root.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        out.update(tuple(int(p) for p in (*rel, f)) for f in files)
    return out


#: Attributes that must agree between the shards of one sampling run.
MERGE_KEYS = (
    "checkpoints",
    "mode",
    "temperature",
    "members_per_checkpoint",
    "wet_rule",
    "store",
    "pixel_threshold",
    "seed",
    "split",
    "days",
    "units",
)


_BLOCK_BYTES = 256 * 2**20  # events per block of merge_samples: about this much memory


def event_blocks(n: int, size: int) -> list[slice]:
    """Return consecutive slices of ``size`` events covering ``range(n)``."""
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def progress_bar(items: list[slice], show: bool, desc: str) -> Any:
    """Return ``items`` wrapped in a tqdm progress bar when ``show``."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="block")


def samples_dataset(
    samples: Any,
    target: Any,
    mask: np.ndarray,
    coords: dict[str, Any],
    attrs: dict[str, Any],
    units: str,
) -> xr.Dataset:
    """Assemble a samples dataset (numpy arrays, or dask arrays for a template)."""
    result = xr.Dataset(
        {
            "samples": (("event", "member", "y", "x"), samples, {"units": units}),
            "target": (("event", "y", "x"), target, {"units": units}),
            "mask": (("y", "x"), mask),
        },
        coords=coords,
    )
    result.attrs.update(attrs)
    return result


def write_samples(ds: xr.Dataset, path: str | Path, fmt: str = "zarr") -> Path:
    """Write a samples dataset atomically as zarr (one event per chunk) or NetCDF."""
    return write_dataset(ds, path, fmt, "samples")


@contextlib.contextmanager
def block_writer(
    template: xr.Dataset, path: Path, fmt: str
) -> Iterator[Callable[[slice, np.ndarray, np.ndarray], None]]:
    """Yield ``write(events, samples, target)`` filling a store laid out like ``template``.

    ``template`` holds ``samples`` and ``target`` as lazy (dask) arrays that
    are never computed; everything else is written at once. The store is
    built in a temporary sibling of ``path`` and renamed onto it on success
    only (a NetCDF file is converted from a temporary zarr store, chunk by
    chunk).
    """
    m, h, w = template["samples"].shape[1:]
    enc = {"samples": {"chunks": (1, m, h, w)}, "target": {"chunks": (1, h, w)}}

    def fill(root: Path) -> Callable[[slice, np.ndarray, np.ndarray], None]:
        template.to_zarr(root, mode="w", compute=False, consolidated=False, encoding=enc,
                         zarr_format=3)  # fmt: skip

        def write(events: slice, samples: np.ndarray, target: np.ndarray) -> None:
            block = xr.Dataset(
                {
                    "samples": (("event", "member", "y", "x"), samples),
                    "target": (("event", "y", "x"), target),
                }
            )
            block.to_zarr(root, region={"event": events}, consolidated=False, zarr_format=3)

        return write

    if fmt == "zarr":
        with atomic_dir(path) as tmp:
            yield fill(tmp)
        return
    if fmt != "netcdf":
        raise DownpourError(f"unknown samples format {fmt!r}; choose zarr or netcdf")
    with scratch_dir(path) as work:
        yield fill(work / "samples.zarr")
        staged = xr.open_zarr(work / "samples.zarr", consolidated=False)
        try:
            for var in staged.variables.values():
                var.encoding = {}
            with atomic_file(path) as tmp:
                staged.to_netcdf(tmp)
        finally:
            staged.close()


def samples_template(
    n_events: int,
    shape: tuple[int, int, int],
    mask: np.ndarray,
    coords: dict[str, Any],
    attrs: dict[str, Any],
    units: str,
) -> xr.Dataset:
    """Return a samples dataset of ``n_events`` whose samples/target are unwritten dask zeros."""
    import dask.array as da

    m, h, w = shape
    step = max(1, min(n_events, 256))
    samples = da.zeros((n_events, m, h, w), chunks=(step, m, h, w), dtype=np.float32)
    target = da.zeros((n_events, h, w), chunks=(step, h, w), dtype=np.float32)
    return samples_dataset(samples, target, mask, coords, attrs, units)


def _plain(value: Any) -> Any:
    """Return an attribute as a plain Python value (NetCDF gives numpy scalars)."""
    return value.item() if isinstance(value, np.generic) else value


def _merged_period(shards: list[xr.Dataset]) -> str:
    periods = [str(s.attrs.get("period", "")) for s in shards]
    if any(not p for p in periods):
        return ""
    return f"{min(p.split(':')[0] for p in periods)}:{max(p.split(':')[1] for p in periods)}"


def merge_samples(
    shards: Sequence[str | Path],
    out: str | Path,
    *,
    fmt: str | None = None,
    progress: bool = False,
) -> Path:
    """Join samples stores of one sampling run, split by time, into one store.

    Events are concatenated in time order, block by block (memory holds
    about 256 MiB of samples at a time), and the store appears at ``out``
    only when complete. With per-event seeding (:func:`event_generator`)
    the result equals one ``downpour sample`` pass over the union of the
    shards' days.

    Parameters
    ----------
    shards
        Samples stores written by ``downpour sample`` (e.g. one per
        ``--period``), zarr or NetCDF, in any order.
    out
        The merged store.
    fmt
        ``"zarr"`` or ``"netcdf"``; default from the suffix of ``out``
        (``.nc`` → NetCDF, else zarr).
    progress
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    DownpourError
        Fewer than one shard, a shard that cannot be read, shards of
        different sampling runs (checkpoints, mode, temperature, members,
        wet rule, store, threshold, seed, split, days, grid), or a day
        present in two shards.
    """
    if not shards:
        raise DownpourError("merge-samples needs at least one samples store")
    out = Path(out)
    paths = [Path(p) for p in shards]
    if out.resolve() in {p.resolve() for p in paths}:
        raise DownpourError(f"--out {out} is one of the shards; write the merge elsewhere")
    opened = [open_samples(p) for p in paths]
    try:
        first = opened[0]
        for path, ds in zip(paths[1:], opened[1:], strict=True):
            for key in MERGE_KEYS:
                a, b = _plain(first.attrs.get(key)), _plain(ds.attrs.get(key))
                if a != b:
                    raise DownpourError(
                        f"cannot merge {path} with {paths[0]}: attribute {key!r} differs "
                        f"({b!r} vs {a!r}); merge only shards of one sampling run (same "
                        "checkpoints, mode, temperature, members, wet rule, store, seed)"
                    )
            if ds["samples"].shape[1:] != first["samples"].shape[1:] or not np.array_equal(
                ds["mask"].values, first["mask"].values
            ):
                raise DownpourError(
                    f"cannot merge {path} with {paths[0]}: members × grid "
                    f"{ds['samples'].shape[1:]} vs {first['samples'].shape[1:]} or the mask "
                    "differs; merge only shards of one sampling run"
                )
        times = [np.asarray(ds["time"].values).astype("datetime64[ns]") for ds in opened]
        all_times = np.concatenate(times)
        days, counts = np.unique(all_times, return_counts=True)
        if (counts > 1).any():
            twice = days[counts > 1]
            owners = [str(p) for p, t in zip(paths, times, strict=True) if np.isin(twice[0], t)]
            raise DownpourError(
                f"shards overlap: {twice.size} day(s) are in more than one shard, e.g. "
                f"{str(twice[0])[:10]} in {' and '.join(owners)}; sample non-overlapping "
                "--period ranges (or leave one of these shards out)"
            )
        order = np.argsort(all_times, kind="stable")
        source = np.repeat(np.arange(len(opened)), [t.size for t in times])[order]
        local = np.concatenate([np.arange(t.size) for t in times])[order]
        attrs = {k: _plain(v) for k, v in first.attrs.items()}
        attrs["period"] = _merged_period(opened)
        attrs["merged_from"] = json.dumps([str(p) for p in paths])
        coords: dict[str, Any] = {"time": ("event", all_times[order])}
        for name in ("lat", "lon"):
            if name in first.coords:
                coords[name] = (first[name].dims, np.asarray(first[name].values))
        coords["checkpoint"] = (
            "member",
            np.array([str(c) for c in first["checkpoint"].values], dtype=object),
        )
        shape = tuple(int(n) for n in first["samples"].shape[1:])
        mask = np.asarray(first["mask"].values, dtype=bool)
        units = str(first["samples"].attrs.get("units", attrs.get("units", "mm/day")))
        template = samples_template(all_times.size, shape, mask, coords, attrs, units)
        per_block = max(1, _BLOCK_BYTES // (4 * int(np.prod(shape))))
        blocks = event_blocks(all_times.size, per_block)
        suffix_fmt = "netcdf" if out.suffix == ".nc" else "zarr"
        with block_writer(template, out, fmt or suffix_fmt) as write:
            for block in progress_bar(blocks, progress, f"merging → {out.name}"):
                samples = np.empty((block.stop - block.start, *shape), dtype=np.float32)
                target = np.empty((block.stop - block.start, *shape[1:]), dtype=np.float32)
                for k in np.unique(source[block]):
                    sel = np.flatnonzero(source[block] == k)
                    idx = local[block][sel]
                    part = opened[k].isel(event=idx)
                    samples[sel] = part["samples"].values
                    target[sel] = part["target"].values
                write(block, samples, target)
    finally:
        for ds in opened:
            ds.close()
    return out
