"""The radar events of a config, and their split into training | validation | test.

``nowcast.target`` is one radar file or a list of them (events: different
days, even different radars at the same step, each with its own ``coarsen``).
:func:`load_events` reads them all at the model step; windows are later cut
inside one event only, never across two. :func:`split_events` assigns the
frames to the splits:

- ``holdout: block`` cuts every event by time into three contiguous blocks,
  training | validation | test (``val_fraction``, ``test_fraction``;
  :func:`split_blocks`);
- ``holdout: event`` holds whole events out: ``val_events`` validate,
  ``test_events`` are verified, the rest train.

Either way no test frame is ever a training input or target.

Examples
--------
>>> split_blocks(20, 0.25, 0.25)["val"]
slice(10, 15, None)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from downpour.config import NowcastConfig, VariableSource
from downpour.core.errors import DownpourError
from downpour.data.rain import WET
from downpour.nowcast.radar import accumulate, coarsen_radar, load_radar
from downpour.nowcast.synthetic import make_embedded_radar

__all__ = [
    "SPLITS",
    "block_wet_fraction",
    "load_events",
    "load_nowcast_source",
    "split_blocks",
    "split_events",
]

SPLITS = ("train", "val", "test")
#: Name of the sequence when there is no list of events.
EMBEDDED, SOURCE = "embedded", "source"


def _embedded(nc: NowcastConfig) -> xr.DataArray:
    ds = make_embedded_radar(
        seed=nc.embedded_seed,
        hours=nc.embedded_hours,
        height=nc.embedded_size,
        width=nc.embedded_size,
        step_minutes=nc.embedded_step_minutes,
    )
    da = accumulate(ds["precip_rate"], nc.step_minutes, key="nowcast.step_minutes")
    da.attrs["source"] = ds.attrs["source"]
    return coarsen_radar(da, nc.coarsen) if nc.coarsen > 1 else da


def load_events(
    nc: NowcastConfig, source: VariableSource | xr.DataArray | None = None
) -> dict[str, xr.DataArray]:
    """Load every radar event of a nowcast config at its step and grid.

    Parameters
    ----------
    nc
        The ``nowcast`` section (``target``, ``step_minutes``, ``coarsen``,
        the ``embedded_*`` generator settings).
    source
        Replaces ``nc.target`` by one sequence: a radar file, or a rate
        DataArray in mm/h already at the model step (dims ``(time, y, x)``).

    Returns
    -------
    dict of str to xarray.DataArray
        Event name → float32 mm/h, dims ``(time, y, x)``, NaN = no data
        (:func:`~downpour.nowcast.radar.load_radar`): the events of
        ``nowcast.target`` by their names, ``{"source": ...}`` for
        ``source``, ``{"embedded": ...}`` for the embedded generator.
    """
    if isinstance(source, xr.DataArray):
        if tuple(source.dims) != ("time", "y", "x"):
            raise DownpourError(f"nowcast source: expected dims (time, y, x), got {source.dims}")
        return {SOURCE: source}
    if source is not None:
        return {SOURCE: load_radar(source, step_minutes=nc.step_minutes, coarsen=nc.coarsen)}
    events = nc.events()
    if not events:
        return {EMBEDDED: _embedded(nc)}
    out = {}
    for i, ev in enumerate(events):
        role = "nowcast.target" if len(events) == 1 else f"nowcast.target[{i}] ({ev.label})"
        coarsen = ev.coarsen if ev.coarsen is not None else nc.coarsen
        da = load_radar(ev, step_minutes=nc.step_minutes, coarsen=coarsen, role=role)
        if ev.pixel_km is not None:
            da.attrs["pixel_km"] = float(ev.pixel_km)
        out[ev.label] = da
    return out


def load_nowcast_source(
    nc: NowcastConfig,
    source: VariableSource | xr.DataArray | None = None,
    event: str | None = None,
) -> xr.DataArray:
    """Load one radar sequence of a nowcast config: ``source``, the named event, or the only one.

    Parameters
    ----------
    nc
        The ``nowcast`` section.
    source
        A radar file or a rate DataArray in mm/h at the model step (replaces
        ``nowcast.target``).
    event
        Name of an event of ``nowcast.target`` (needed when it lists several).

    Returns
    -------
    xarray.DataArray
        float32 mm/h, dims ``(time, y, x)``, NaN = no data.
    """
    names = [e.label for e in nc.events()]
    if source is None and event is not None:
        if event not in names:
            raise DownpourError(
                f"--event {event!r} is not an event of nowcast.target; valid names: "
                f"{', '.join(names) or 'none (the run used the embedded generator)'}"
            )
        one = nc.model_copy(update={"target": nc.events()[names.index(event)]})
        return next(iter(load_events(one).values()))
    if source is None and len(names) > 1:
        raise DownpourError(
            f"nowcast.target lists {len(names)} events: name one with --event "
            f"({', '.join(names)}) or give --source"
        )
    return next(iter(load_events(nc, source).values()))


def split_blocks(n_times: int, val_fraction: float, test_fraction: float) -> dict[str, slice]:
    """Contiguous train | val | test index ranges of a time axis of ``n_times`` frames.

    ``train = [0, round(T·(1 − v − t)))``, ``val`` up to ``round(T·(1 − t))``,
    ``test`` the rest.

    Examples
    --------
    >>> split_blocks(10, 0.2, 0.3)
    {'train': slice(0, 5, None), 'val': slice(5, 7, None), 'test': slice(7, 10, None)}
    """
    i_val = int(round(n_times * (1.0 - val_fraction - test_fraction)))
    i_test = int(round(n_times * (1.0 - test_fraction)))
    return {"train": slice(0, i_val), "val": slice(i_val, i_test), "test": slice(i_test, n_times)}


def split_events(
    events: dict[str, xr.DataArray], nc: NowcastConfig
) -> dict[str, dict[str, xr.DataArray]]:
    """Assign the frames of every event to the splits (module docstring).

    Returns
    -------
    dict
        ``{split: {event: block}}`` for ``train``, ``val``, ``test``: with
        ``holdout: block`` every event has a (possibly empty) block in each
        split; with ``holdout: event`` each event sits whole in one split.
    """
    out: dict[str, dict[str, xr.DataArray]] = {s: {} for s in SPLITS}
    if nc.holdout == "event":
        missing = [n for n in (*nc.val_events, *nc.test_events) if n not in events]
        if missing:
            raise DownpourError(
                f"nowcast.val_events/test_events: {missing} are not among the loaded events "
                f"({', '.join(events)}); name events of nowcast.target"
            )
        for name, da in events.items():
            split = (
                "val" if name in nc.val_events else "test" if name in nc.test_events else "train"
            )
            out[split][name] = da
        return out
    for name, da in events.items():
        blocks = split_blocks(da.sizes["time"], nc.val_fraction, nc.test_fraction)
        for split, b in blocks.items():
            out[split][name] = da.isel(time=b)
    return out


def block_wet_fraction(blocks: list[xr.DataArray] | xr.DataArray) -> float:
    """Share of valid cells above 0.1 mm/h over the frames of blocks (NaN when all are empty)."""
    blocks = [blocks] if isinstance(blocks, xr.DataArray) else blocks
    wet = n = 0
    for da in blocks:
        v = np.asarray(da.values)
        finite = np.isfinite(v)
        wet += int((v[finite] > WET).sum())
        n += int(finite.sum())
    return wet / n if n else float("nan")
