"""Range checks of a rollout: when the forecast leaves the range of the training rain.

Exploding: a lead whose max exceeds ``range_factor`` × the training max, or
whose domain mean exceeds ``range_factor`` × the largest training frame mean.
Vanishing: a lead whose wet fraction (> 0.1 mm/h) or max drops below 5% of
the init frame's while that had rain. Each names the lead and the numbers;
:func:`~downpour.nowcast.forecast.run_forecast` issues them as
:class:`RolloutRangeWarning` and keeps them in ``attrs["range_warnings"]``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from downpour.data.rain import WET
from downpour.nowcast.windows import iso_minute

__all__ = ["RolloutRangeWarning", "check_rollout_range", "range_messages"]

_VANISH_RATIO = 0.05


class RolloutRangeWarning(UserWarning):
    """A rollout left the range of the training data (exploding or vanishing rain)."""


def check_rollout_range(
    ds: xr.Dataset,
    stats: dict[str, float],
    *,
    init_wet: float,
    init_max: float,
    factor: float = 2.0,
) -> list[str]:
    """Return messages for the first exploding and the first vanishing lead of a forecast.

    Exploding: domain max > ``factor`` × training max, or domain mean >
    ``factor`` × largest training frame mean. Vanishing (only when the init
    frame had rain): wet fraction (> 0.1 mm/h) below 5% of the init frame's,
    or domain max below 5% of the init frame's (rain smeared into drizzle).

    Parameters
    ----------
    ds
        A forecast (:func:`~downpour.nowcast.forecast.run_forecast`) with its
        per-lead diagnostics.
    stats
        Training statistics (``max``, ``mean_max``;
        :func:`~downpour.nowcast.datamodule.training_stats`).
    init_wet, init_max
        Wet fraction (> 0.1 mm/h) and max (mm/h) of the init frame.
    factor
        ``nowcast.range_factor``.

    Returns
    -------
    list of str
        Empty when every lead stays in range.
    """
    out: list[str] = []
    mx, mean, wet = (
        ds[v].values.astype(np.float64) for v in ("domain_max", "domain_mean", "wet_fraction")
    )
    lim_max, lim_mean = factor * stats["max"], factor * stats["mean_max"]
    explode = np.flatnonzero((mx > lim_max) | (mean > lim_mean))
    if explode.size:
        j = int(explode[0])
        out.append(
            f"the rollout leaves the training range (exploding rain) at lead "
            f"{_lead(ds, j)}: domain max {mx[j]:.1f} mm/h (limit {factor:g} × training max "
            f"{stats['max']:.1f} = {lim_max:.1f}), domain mean {mean[j]:.3f} mm/h (limit "
            f"{factor:g} × largest training frame mean {stats['mean_max']:.3f} = {lim_mean:.3f}); "
            f"{explode.size} of {mx.size} leads out of range"
        )
    if init_wet >= 1e-3 and init_max > WET:
        vanish = np.flatnonzero((wet < _VANISH_RATIO * init_wet) | (mx < _VANISH_RATIO * init_max))
        if vanish.size:
            j = int(vanish[0])
            out.append(
                f"the rollout fades to no rain (vanishing) at lead {_lead(ds, j)}: wet "
                f"fraction {wet[j]:.4f} (init {init_wet:.4f}), domain max {mx[j]:.2f} mm/h "
                f"(init {init_max:.2f}; limit {_VANISH_RATIO:g} × the init frame's), domain "
                f"mean {mean[j]:.4f} mm/h; {vanish.size} of {wet.size} leads"
            )
    return out


def _lead(ds: xr.Dataset, j: int) -> str:
    minutes = int(ds["lead_time"].values[j].astype("timedelta64[m]").astype(np.int64))
    return f"+{minutes // 60:d}:{minutes % 60:02d} h (valid {iso_minute(ds['time'].values[j])})"


def range_messages(
    ds: xr.Dataset, source: xr.DataArray, init: int, stats: dict[str, float], factor: float
) -> list[str]:
    """Range-check a forecast from frame ``init`` of ``source`` (:func:`check_rollout_range`).

    The wet fraction and max of the init frame (float32, as the network saw
    it) are the reference of the vanishing check.
    """
    last = np.asarray(source.values[init], dtype=np.float32)
    init_wet = float(np.nanmean(np.where(np.isfinite(last), last > WET, np.nan)))
    init_max = float(np.nanmax(last))
    return check_rollout_range(ds, stats, init_wet=init_wet, init_max=init_max, factor=factor)
