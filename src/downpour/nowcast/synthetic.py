"""A synthetic radar sequence for tests and CPU runs: advecting, growing, decaying rain cells.

:func:`make_embedded_radar` is the "embedded generator" of the ``nowcast``
preset (``nowcast.target`` unset; ``nowcast.embedded_*`` settings): a
deterministic function of its seed, 5-min frames in mm/h, in the layout of a
radar file as :func:`downpour.nowcast.radar.load_radar` returns it before
accumulation.

Examples
--------
>>> ds = make_embedded_radar(seed=0, hours=6)
>>> ds["precip_rate"].shape, ds["precip_rate"].attrs["units"]
((72, 64, 64), 'mm/h')
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["make_embedded_radar"]


def make_embedded_radar(
    seed: int = 0,
    hours: int = 72,
    height: int = 64,
    width: int = 64,
    step_minutes: int = 5,
) -> xr.Dataset:
    """Generate a deterministic radar sequence of advecting, growing, decaying rain cells.

    Cells are anisotropic Gaussians on a periodic 2 km grid, moving with a
    common steering flow (direction uniform, 6-12 m/s) plus a per-cell
    perturbation (σ 1.5 m/s); each lives 1-4 h with a ``sin`` life cycle
    (growth then decay) and a peak of 5-80 mm/h (log-uniform). Births are
    uniform in time at a rate that keeps about five cells alive per
    64×64 area. The field is summed in a separable form
    (a batched matmul of (T, H, N) by (T, N, W)): no loops over pixels or cells.

    Parameters
    ----------
    seed
        Random seed; the same seed gives the same field.
    hours
        Length; ``hours * 60 // step_minutes`` frames from 2021-07-01 00:00 UTC.
    height, width
        Grid size.
    step_minutes
        Frame spacing.

    Returns
    -------
    xarray.Dataset
        ``precip_rate`` float32 mm/h, dims ``(time, y, x)``; 1-D ascending
        ``y``/``x`` in metres; attributes ``steering_u_ms``/``steering_v_ms``
        (x and y velocity) and ``grid_spacing_m``.
    """
    rng = np.random.default_rng(seed)
    dx_m = 2000.0
    n_t = hours * 60 // step_minutes
    t_h = np.arange(n_t) * step_minutes / 60.0  # hours
    density = 5.0 * (height * width) / 4096.0  # cells alive at once
    mean_life = 2.5
    n_cells = max(1, int(round(density / mean_life * (hours + 4.0))))
    birth = rng.uniform(-4.0, hours, n_cells)
    life = rng.uniform(1.0, 4.0, n_cells)
    peak = np.exp(rng.uniform(np.log(5.0), np.log(80.0), n_cells))
    sig_y = rng.uniform(1.5, 4.0, n_cells)  # pixels
    sig_x = sig_y * rng.uniform(0.6, 1.6, n_cells)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    speed = rng.uniform(6.0, 12.0)
    u, v = speed * np.cos(angle), speed * np.sin(angle)
    cu = u + rng.normal(0.0, 1.5, n_cells)
    cv = v + rng.normal(0.0, 1.5, n_cells)
    y0 = rng.uniform(0.0, height, n_cells)
    x0 = rng.uniform(0.0, width, n_cells)

    age = (t_h[:, None] - birth[None, :]) / life[None, :]  # (T, N) in life fractions
    amp = np.where((age > 0) & (age < 1), np.sin(np.pi * np.clip(age, 0, 1)), 0.0) * peak
    px_per_h = 3600.0 / dx_m
    since = t_h[:, None] - birth[None, :]
    cy = (y0 + cv * px_per_h * since) % height  # (T, N)
    cx = (x0 + cu * px_per_h * since) % width

    def profile(c: np.ndarray, n: int, sig: np.ndarray) -> np.ndarray:
        d = np.arange(n)[None, None, :] - c[:, :, None]
        d = (d + n / 2.0) % n - n / 2.0  # periodic distance
        return np.exp(-0.5 * (d / sig[None, :, None]) ** 2)

    gy = profile(cy, height, sig_y) * amp[:, :, None]  # (T, N, H)
    gx = profile(cx, width, sig_x)  # (T, N, W)
    field = np.matmul(gy.transpose(0, 2, 1), gx).astype(np.float32)  # Σ_n gy ⊗ gx

    start = np.datetime64("2021-07-01T00:00", "ns")
    times = start + (np.arange(n_t) * step_minutes).astype("timedelta64[m]")
    ys = (np.arange(height) + 0.5) * dx_m
    xs = (np.arange(width) + 0.5) * dx_m
    da = xr.DataArray(
        field,
        dims=("time", "y", "x"),
        coords={
            "time": times.astype("datetime64[ns]"),
            "y": ("y", ys, {"units": "m", "axis": "Y"}),
            "x": ("x", xs, {"units": "m", "axis": "X"}),
        },
        attrs={"units": "mm/h", "long_name": "rain rate"},
    )
    return xr.Dataset(
        {"precip_rate": da},
        attrs={
            "source": f"downpour embedded radar (seed {seed})",
            "steering_u_ms": float(u),
            "steering_v_ms": float(v),
            "grid_spacing_m": dx_m,
            "step_minutes": int(step_minutes),
        },
    )
