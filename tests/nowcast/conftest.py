"""Fixtures of the nowcast tests: one thread, small sources, a stub network.

The tiny trained run is ``trained_nowcast`` of tests/conftest.py (the CLI tests use it too).
"""

import numpy as np
import pytest
import torch
import xarray as xr


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every nowcast test runs on one thread (``one_thread`` of tests/conftest.py)."""


class Stub(torch.nn.Module):
    """Next frame = f(last frame); no parameters besides a dummy one."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, frames, enc):
        return self.fn(frames[:, -1:])


@pytest.fixture
def stub():
    """:class:`Stub`: a network whose next frame is ``fn(last frame)``."""
    return Stub


def _radar(n=8, h=3, w=4, start="2021-07-01T00:00", gap_at=None):
    times = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(1, "h")
    vals = (np.arange(n, dtype=np.float32)[:, None, None] + 1.0) * np.ones((1, h, w), np.float32)
    vals[:, 0, 0] = np.nan  # outside the radar
    da = xr.DataArray(
        vals,
        dims=("time", "y", "x"),
        coords={"time": times, "y": 1000.0 * np.arange(h), "x": 2000.0 * np.arange(w)},
        attrs={"step_minutes": 60, "units": "mm/h"},
    )
    if gap_at is not None:
        da = da.isel(time=[i for i in range(n) if i != gap_at])
    return da


@pytest.fixture
def radar():
    """``radar(n)``: hourly frames ``k + 1`` mm/h, cell (0, 0) outside the radar; ``gap_at``."""
    return _radar


def _hourly(n, h=4, w=5, start="2021-07-01T00:00"):
    times = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(1, "h")
    values = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, h, w), np.float32)
    return xr.DataArray(
        values, dims=("time", "y", "x"), coords={"time": times}, attrs={"step_minutes": 60}
    )


@pytest.fixture
def hourly():
    """``hourly(n)``: n hourly frames of value k (mm/h) everywhere, no missing data."""
    return _hourly
