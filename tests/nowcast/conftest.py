"""Shared fixtures of the nowcast tests: one thread, small sources, a stub network, a tiny run."""

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from click.testing import CliRunner

# `nowcast train --set ...` of the tiny run shared by the forecast, verify and CLI tests:
# 24 hourly frames of 24×24 (generated directly at 60 min), one epoch
TINY_RUN = [
    "nowcast.embedded_hours=24",
    "nowcast.embedded_size=24",
    "nowcast.embedded_step_minutes=60",
    "nowcast.n_frames=3",
    "nowcast.base_features=4",
    "nowcast.depth=2",
    "nowcast.batch_size=2",
    "nowcast.accumulate=1",
    "nowcast.epochs=1",
    "nowcast.hours=3",
    "nowcast.verify_every=1",
    "nowcast.fss_scales=[1,3]",
    "nowcast.rollout_steps=1",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run several times faster on one thread on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """The last checkpoint of a tiny run trained through `nowcast train` (shared, read-only)."""
    from downpour.cli.nowcast import nowcast

    run = tmp_path_factory.mktemp("nowcast_run")
    args = ["train", "--out", run]
    for item in TINY_RUN:
        args += ["--set", item]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = CliRunner().invoke(nowcast, [str(a) for a in args])
    finally:
        torch.set_num_threads(n)
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == 0, res.output
    assert "parameters" in res.output and "validation MAE" in res.output
    return run / "checkpoints" / "nowcast" / "last.ckpt"


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
