"""Bad input stops every command with one clear message (docs/data.md#bad-input).

The first part covers ``downpour prepare`` in detail; the corpus at the end
(:func:`test_bad_input_is_refused`, one case per bad input) covers every
command: ``prepare``, ``train cvae|srdrn``, ``sample``, ``evaluate``,
``augment``, ``verify``, ``verify-merge``, ``nowcast train|forecast|verify``,
``config`` and ``--set``.

Every test runs the real CLI through ``click.testing.CliRunner`` on small
NetCDF files written to ``tmp_path`` and checks that

- the exit status is 2 and the output is one ``error:`` message that names the
  file, variable and/or config key involved and says what to do,
- there is no traceback,
- nothing was left behind in the run directory (no store, card, config, or
  temporary ``.*.tmp`` entries); in the corpus, every path the command would
  have written is absent, or byte-identical to what was there before.

The default input set: target ``pr`` (time, lat, lon), daily 2001-01-01 ..
2002-12-31 (730 days) on a 12×12 grid (lat 40.0..41.1, lon 10.0..11.1, step
0.1), units mm/day; scale factor 4 (low-res 3×3); splits train 2001, val
2002-01-01..2002-06-30, test 2002-07-01..2002-12-31.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml
from click.testing import CliRunner, Result

from _shared import QUARTER_JAN, TINY_CVAE, copy_run, one_torch_thread, write_augmented
from downpour.cli.main import cli
from downpour.config import load_config
from downpour.downscaling.prepare import prepare
from downpour.downscaling.store import open_store

TIMES = pd.date_range("2001-01-01", "2002-12-31", freq="D")
N_DAYS = TIMES.size  # 730
FACTOR = 4


def grid(n: int, start: float, step: float = 0.1) -> np.ndarray:
    """Return ``n`` regularly spaced coordinates from ``start``."""
    return start + step * np.arange(n)


def rain(n_time: int, ny: int, nx: int, seed: int = 0) -> np.ndarray:
    """Return a non-negative daily rain field (≈60% wet cells), float32."""
    rng = np.random.default_rng(seed)
    v = rng.gamma(0.5, 4.0, (n_time, ny, nx))
    v[v < 0.5] = 0.0
    return v.astype(np.float32)


def default_splits() -> dict[str, Any]:
    return {
        "train": {"years": [2001]},
        "val": {"start": "2002-01-01", "end": "2002-06-30"},
        "test": {"start": "2002-07-01", "end": "2002-12-31"},
    }


class Inputs:
    """Builds input files and configs in one test's ``tmp_path`` and runs the CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = root / "run"

    # ----------------------------------------------------------------- files

    def target(
        self,
        values: np.ndarray | None = None,
        *,
        name: str = "pr.nc",
        variable: str = "pr",
        units: str = "mm/day",
        ny: int = 12,
        nx: int = 12,
        times: pd.DatetimeIndex = TIMES,
    ) -> Path:
        """Write the target file (time, lat, lon) and return its path."""
        if values is None:
            values = rain(times.size, ny, nx)
        ds = xr.Dataset(
            {variable: (("time", "lat", "lon"), values, {"units": units})},
            coords={"time": times, "lat": grid(ny, 40.0), "lon": grid(nx, 10.0)},
        )
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(path)
        return path

    def predictor(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        values: np.ndarray | None = None,
        *,
        name: str = "q.nc",
        variable: str = "q",
        times: pd.DatetimeIndex = TIMES,
    ) -> Path:
        """Write a predictor file (time, lat, lon) on its own grid."""
        if values is None:
            values = (
                lat[None, :, None] + 2.0 * lon[None, None, :] + np.arange(times.size)[:, None, None]
            ).astype(np.float32)
        ds = xr.Dataset(
            {variable: (("time", "lat", "lon"), values, {"units": "kg kg-1"})},
            coords={"time": times, "lat": lat, "lon": lon},
        )
        path = self.root / name
        ds.to_netcdf(path)
        return path

    # ---------------------------------------------------------------- config

    def config(
        self,
        data: dict[str, Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        name: str = "cfg.yaml",
        target: Path | None = None,
    ) -> Path:
        """Write a YAML config (absolute paths) and return its path.

        ``data`` keys replace those of the default data section; ``extra``
        adds top-level sections.
        """
        section: dict[str, Any] = {
            "target": {
                "path": str(target or self.root / "pr.nc"),
                "variable": "pr",
                "kind": "precip",
            },
            "scale_factor": FACTOR,
            "splits": default_splits(),
        }
        section.update(data or {})
        cfg: dict[str, Any] = {"name": "badinput", "data": section, **(extra or {})}
        path = self.root / name
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        return path

    # ------------------------------------------------------------------- run

    def prepare(self, cfg: Path, *extra: str) -> Result:
        """Run ``downpour prepare --config CFG --out RUN``."""
        return CliRunner().invoke(
            cli, ["prepare", "--config", str(cfg), "--out", str(self.out), *extra]
        )

    def assert_fails(self, cfg: Path, *must_contain: str) -> str:
        """Run prepare, check a clean failure naming ``must_contain``; return the output."""
        result = self.prepare(cfg)
        out = result.output
        assert result.exit_code == 2, (
            f"exit {result.exit_code}, output:\n{out}\n{result.exception!r}"
        )
        assert isinstance(result.exception, SystemExit)
        assert "Traceback" not in out
        assert out.startswith("error: "), out
        assert sum(line.startswith("error:") for line in out.splitlines()) == 1, out
        assert len(result.stderr.splitlines()) == 1, result.stderr  # the message is one line
        for text in must_contain:
            assert text in out, f"{text!r} not in the message:\n{out}"
        self.assert_nothing_written()
        return out

    def assert_nothing_written(self) -> None:
        """The run directory holds no store, card, config or temporary entry."""
        out = self.out
        assert not (out / "data" / "store.zarr").exists()
        assert not (out / "data" / "card.json").exists()
        assert not (out / "data" / "normalization.json").exists()
        assert not (out / "config.yaml").exists()
        if out.exists():
            leftovers = [
                p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")
            ]
            assert leftovers == []
            assert [p for p in out.rglob("*") if p.is_file()] == []


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    """The input builder for one test."""
    return Inputs(tmp_path)


def lowres(coord: np.ndarray, factor: int = FACTOR) -> np.ndarray:
    """Block means of a 1-D coordinate: the low-res cell centres."""
    return coord.reshape(-1, factor).mean(axis=1)


# ------------------------------------------------------------------ files / variables


def test_missing_target_file(inputs: Inputs) -> None:
    missing = inputs.root / "nowhere" / "pr.nc"
    cfg = inputs.config(target=missing)
    inputs.assert_fails(cfg, str(missing), "not found", "data.target.path")


@pytest.mark.parametrize("folder", ["era5[v2]", "runs[/old]"])
def test_message_with_brackets_in_the_path_is_printed_verbatim(inputs: Inputs, folder: str) -> None:
    # the path is user text, not console markup: it must appear unchanged
    missing = inputs.root / folder / "pr.nc"
    cfg = inputs.config(target=missing)
    inputs.assert_fails(cfg, f"file {missing} not found", "data.target.path")


def test_missing_variable(inputs: Inputs) -> None:
    path = inputs.target(variable="precip")
    cfg = inputs.config()  # asks for 'pr'
    inputs.assert_fails(
        cfg,
        f"variable 'pr' not found in {path}",
        "it holds: precip",
        "Set 'data.target.variable'",
    )


def test_unknown_units(inputs: Inputs) -> None:
    path = inputs.target(units="degC")
    out = inputs.assert_fails(inputs.config(), f"variable 'pr' in {path}", "'degC'", "data.target")
    # says which units are accepted, and which config key overrides a wrong attribute
    # (as the message for a missing units attribute does: "set 'data.target.units'")
    assert "kg m-2 s-1" in out and "mm/day" in out
    assert "'data.target.units'" in out


def test_corrupt_netcdf(inputs: Inputs) -> None:
    path = inputs.root / "pr.nc"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out = inputs.assert_fails(inputs.config(), str(path), "data.target", "cannot read", "corrupt")
    # no advice that does not apply: the config has no 'engine' to select, and
    # installing IO packages does not repair a corrupt file
    assert "engine" not in out
    assert "installing" not in out


def test_truncated_netcdf(inputs: Inputs) -> None:
    path = inputs.target()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a download cut short
    inputs.assert_fails(inputs.config(), str(path), "data.target", "cannot read", "complete")


def test_four_dimensional_variable(inputs: Inputs) -> None:
    values = rain(N_DAYS, 12, 12)
    ds = xr.Dataset(
        {
            "pr": (
                ("time", "lev", "lat", "lon"),
                np.stack([values, values], axis=1),
                {"units": "mm/day"},
            )
        },
        coords={"time": TIMES, "lev": [850.0, 500.0], "lat": grid(12, 40.0), "lon": grid(12, 10.0)},
    )
    path = inputs.root / "pr.nc"
    ds.to_netcdf(path)
    inputs.assert_fails(
        inputs.config(),
        f"variable 'pr' in {path}",
        "4 dimensions",
        "'lev'",
        "expected 3 (time, y, x)",
        "select a level",
    )


def test_mask_on_another_grid(inputs: Inputs) -> None:
    inputs.target()  # 12×12
    path = inputs.root / "lsm.nc"
    xr.Dataset(
        {"lsm": (("lat", "lon"), np.ones((10, 12), dtype=np.float32))},
        coords={"lat": grid(10, 40.0), "lon": grid(12, 10.0)},
    ).to_netcdf(path)
    out = inputs.assert_fails(
        inputs.config({"mask": {"path": str(path), "variable": "lsm"}}),
        "data.mask",
        f"variable 'lsm' in {path}",
        "10×12",
        "target grid",
    )
    # the problem is the mask file, not the target or the grid_fit setting
    assert not out.startswith("error: data.target")
    assert "grid_fit" not in out


# ------------------------------------------------------------------ values


def test_inf_in_target(inputs: Inputs) -> None:
    values = rain(N_DAYS, 12, 12)
    values[33, 4, 9] = np.inf  # 2001-02-03
    path = inputs.target(values)
    inputs.assert_fails(
        inputs.config(),
        "data.target",
        f"variable 'pr' in {path}",
        "1 infinite values",
        "2001-02-03",
        "replace them",
    )


def test_nan_in_predictor(inputs: Inputs) -> None:
    inputs.target()
    q = (np.arange(N_DAYS)[:, None, None] + np.zeros((1, 3, 3))).astype(np.float32)
    q[63, 1, 2] = np.nan  # 2001-03-05
    path = inputs.predictor(lowres(grid(12, 40.0)), lowres(grid(12, 10.0)), q)
    cfg = inputs.config({"predictors": [{"path": str(path), "variable": "q"}]})
    inputs.assert_fails(
        cfg,
        "data.predictors[0]",
        f"variable 'q' in {path}",
        "1 NaN/missing values",
        "2001-03-05",
        "fill the gaps",
    )


def test_inf_in_predictor(inputs: Inputs) -> None:
    inputs.target()
    q = np.ones((N_DAYS, 3, 3), dtype=np.float32)
    q[400, 0, 0] = -np.inf  # 2002-02-05
    path = inputs.predictor(lowres(grid(12, 40.0)), lowres(grid(12, 10.0)), q)
    cfg = inputs.config({"predictors": [{"path": str(path), "variable": "q"}]})
    inputs.assert_fails(
        cfg, "data.predictors[0]", f"variable 'q' in {path}", "infinite", "2002-02-05"
    )


def test_negative_rain_beyond_rounding(inputs: Inputs) -> None:
    values = rain(N_DAYS, 12, 12)
    values[165, 3, 7] = -5.0  # 2001-06-15
    path = inputs.target(values)
    inputs.assert_fails(
        inputs.config(),
        "data.target",
        f"variable 'pr' in {path}",
        "1 negative values below -0.01 mm/day",
        "min -5",
        "2001-06-15",
        "y=3, x=7",
        "fix the file",
        "data.negative_tolerance",
    )


def test_small_negative_rain_is_clipped(inputs: Inputs) -> None:
    values = rain(N_DAYS, 12, 12)
    cells = [
        (0, 0, 0),
        (10, 5, 5),
        (100, 11, 11),
        (364, 2, 9),
        (365, 7, 1),
        (729, 6, 6),
        (500, 0, 11),
    ]
    for t, i, j in cells:
        values[t, i, j] = -0.001
    inputs.target(values)
    result = inputs.prepare(inputs.config())
    assert result.exit_code == 0, result.output
    assert "negative values clipped 7" in " ".join(result.output.split())
    card = json.loads((inputs.out / "data" / "card.json").read_text())
    assert card["clipped_negative_values"] == len(cells)
    store = open_store(inputs.out / "data" / "store.zarr")
    y = store["target"].values
    assert y.min() == 0.0
    for t, i, j in cells:
        assert y[t, i, j] == 0.0
    untouched = values.copy()
    for t, i, j in cells:
        untouched[t, i, j] = 0.0
    np.testing.assert_array_equal(y, untouched)


# ------------------------------------------------------------------ time axes and splits


def test_mismatched_time_axes(inputs: Inputs) -> None:
    inputs.target()
    short = pd.date_range("2001-01-01", "2002-06-30", freq="D")  # 546 days: misses 184
    path = inputs.predictor(lowres(grid(12, 40.0)), lowres(grid(12, 10.0)), times=short)
    cfg = inputs.config({"predictors": [{"path": str(path), "variable": "q"}]})
    inputs.assert_fails(
        cfg,
        "data.predictors[0]",
        f"variable 'q' in {path}",
        "do not match",
        "184 of the target's 730 time steps",
        "2002-07-01",
        "2001-01-01..2002-06-30",
        "same days",
    )


def test_empty_split(inputs: Inputs) -> None:
    path = inputs.target()
    splits = {**default_splits(), "test": {"years": [2005]}}
    inputs.assert_fails(
        inputs.config({"splits": splits}),
        "data.splits.test (2005) has no days",
        str(path),
        "2001-01-01..2002-12-31",
        "change data.splits.test",
    )


def test_overlapping_splits(inputs: Inputs) -> None:
    inputs.target()
    splits = {
        "train": {"years": [2001, 2002]},
        "val": {"years": [2002]},
        "test": {"start": "2003-01-01", "end": "2003-12-31"},
    }
    inputs.assert_fails(
        inputs.config({"splits": splits}),
        "data.splits",
        "'train' (2001-2002)",
        "'val' (2002)",
        "overlap on 2002-01-01..2002-12-31",
        "one split only",
    )


# ------------------------------------------------------------------ grids


def test_grid_smaller_than_scale_factor(inputs: Inputs) -> None:
    path = inputs.target()
    inputs.assert_fails(
        inputs.config({"scale_factor": 16}),
        "data.target",
        str(path),
        "12×12",
        "smaller than the scale factor 16",
        "lower data.scale_factor",
    )


def test_scale_factor_does_not_divide_grid(inputs: Inputs) -> None:
    path = inputs.target(ny=13, nx=14)
    inputs.assert_fails(
        inputs.config(),  # grid_fit defaults to 'error'
        "data.target",
        str(path),
        "scale factor 4 does not divide the grid 13×14",
        "data.grid_fit",
        "'crop' (to 12×12)",
        "'pad' (to 16×16)",
    )


@pytest.mark.parametrize(
    ("mode", "shape", "valid", "rows", "cols"),
    [
        # crop 13×14 → 12×12: the extra row from the end, one column at each edge
        ("crop", (12, 12), 144, slice(0, 12), slice(1, 13)),
        # pad 13×14 → 16×16: rows 1 before + 2 after, columns 1 + 1; padded cells invalid
        ("pad", (16, 16), 13 * 14, slice(1, 14), slice(1, 15)),
    ],
)
def test_grid_fit_crop_and_pad(
    inputs: Inputs, mode: str, shape: tuple[int, int], valid: int, rows: slice, cols: slice
) -> None:
    values = rain(N_DAYS, 13, 14)
    inputs.target(values, ny=13, nx=14)
    result = inputs.prepare(inputs.config({"grid_fit": mode}))
    assert result.exit_code == 0, result.output
    card = json.loads((inputs.out / "data" / "card.json").read_text())
    assert card["grid"]["high_res"] == list(shape)
    assert card["grid"]["low_res"] == [shape[0] // FACTOR, shape[1] // FACTOR]
    assert card["grid"]["valid_cells"] == valid
    assert card["grid"]["fit"].startswith("cropped" if mode == "crop" else "padded")
    assert card["shapes"]["y"] == [N_DAYS, *shape]
    store = open_store(inputs.out / "data" / "store.zarr")
    y = store["target"].values
    assert y.shape == (N_DAYS, *shape)
    assert store["predictors"].shape == (N_DAYS, 1, shape[0] // FACTOR, shape[1] // FACTOR)
    if mode == "crop":
        np.testing.assert_array_equal(y, values[:, rows, cols])
    else:
        np.testing.assert_array_equal(y[:, rows, cols], values)
    mask = store["mask"].values
    assert int(mask.sum()) == valid
    assert mask[rows, cols].all()
    if mode == "pad":
        assert not mask[0].any() and not mask[-2:].any()
        assert not mask[:, 0].any() and not mask[:, -1].any()
        assert (y[:, ~mask] == 0).all()


def test_predictor_domain_does_not_cover_target(inputs: Inputs) -> None:
    inputs.target()  # low-res cells at lat 40.15..40.95, lon 10.15..10.95
    lat = np.linspace(40.3, 41.0, 8)
    lon = np.linspace(10.3, 11.0, 8)
    path = inputs.predictor(lat, lon)
    cfg = inputs.config({"predictors": [{"path": str(path), "variable": "q"}]})
    inputs.assert_fails(
        cfg,
        "data.predictors[0]",
        f"variable 'q' in {path}",
        "covers lat 40.300..41.000, lon 10.300..11.000",
        "does not cover the target's low-res cells",
        "lat 40.150..40.950, lon 10.150..10.950",
        "larger domain",
    )


def test_predictor_on_a_larger_grid_is_interpolated(inputs: Inputs) -> None:
    # the counterpart of the test above: a covering predictor is regridded bilinearly
    inputs.target()
    lat = np.linspace(39.0, 42.0, 13)
    lon = np.linspace(9.0, 12.0, 9)
    path = inputs.predictor(lat, lon)  # q = lat + 2 lon + day: bilinear is exact
    cfg = inputs.config({"predictors": [{"path": str(path), "variable": "q"}]})
    result = inputs.prepare(cfg)
    assert result.exit_code == 0, result.output
    store = open_store(inputs.out / "data" / "store.zarr")
    lat_lr, lon_lr = lowres(grid(12, 40.0)), lowres(grid(12, 10.0))
    expect = lat_lr[None, :, None] + 2.0 * lon_lr[None, None, :] + np.arange(N_DAYS)[:, None, None]
    np.testing.assert_allclose(store["predictors"].values[:, 0], expect, rtol=1e-6)
    assert list(store["channel"].values) == ["q"]


# ------------------------------------------------------------------ config files


def test_unknown_config_key(inputs: Inputs) -> None:
    inputs.target()
    cfg = inputs.config(extra={"train": {"epoch": 5}})
    inputs.assert_fails(cfg, "unknown config key 'train.epoch'", str(cfg), "did you mean 'epochs'?")


def test_unknown_config_key_in_data_section(inputs: Inputs) -> None:
    inputs.target()
    cfg = inputs.config({"scale_facter": 4})
    inputs.assert_fails(
        cfg, "unknown config key 'data.scale_facter'", str(cfg), "did you mean 'scale_factor'?"
    )


def test_wrong_type_in_config(inputs: Inputs) -> None:
    inputs.target()
    cfg = inputs.config(extra={"train": {"epochs": "many"}})
    inputs.assert_fails(cfg, "'train.epochs'", str(cfg), "integer", "'many'")


def test_invalid_yaml(inputs: Inputs) -> None:
    inputs.target()
    cfg = inputs.root / "cfg.yaml"
    cfg.write_text("name: x\ndata:\n  scale_factor: 4\n   splits: {train: 2001\n", encoding="utf-8")
    inputs.assert_fails(cfg, f"config {cfg} is not valid YAML", "line 4")


def test_missing_config_file(inputs: Inputs) -> None:
    cfg = inputs.root / "configs" / "missing.yaml"
    inputs.assert_fails(cfg, f"config file {cfg} not found", "presets: ", "demo")


# ====================================================================== the corpus
#
# Every command refuses bad input the same way: exit status 2, exactly one line on
# stderr that starts with ``error:`` and names the file, variable or key, no
# traceback, and every path the command would have written absent (or unchanged,
# byte for byte, where it existed before). Each case below builds its input and
# returns a :class:`Call`; :func:`test_bad_input_is_refused` runs them all.
#
# The shared inputs of the cases live on :class:`World` (built once per module, on
# first use, read-only): the session's ``quarter_jan_run`` (48×36 ← 4×3, test
# January 2002), a copy of it holding untrained tiny cVAE and SRDRN checkpoints
# (built the way training writes them), a second prepared run on another grid
# (24×24), samples stores drawn from the cVAE, one saved verification piece of each
# run, and the session's tiny trained nowcaster.


def digest(path: Path) -> dict[str, str] | None:
    """Content fingerprint of a file or directory tree (``None`` when absent)."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "<dir>"
        for p in sorted(path.rglob("*"))
    }


@dataclass
class Call:
    """One refused command line and what it must leave alone."""

    args: list[Any]  # arguments of `downpour`
    names: tuple[str, ...]  # text that must appear in the error line (file, variable, key)
    watch: tuple[Path, ...] = ()  # outputs: absent, or byte-identical when they existed
    marker: Path | None = None  # a file that unpickling a crafted payload would create
    banned: tuple[str, ...] = ()  # text that must not appear in the error line


def check_refused(call: Call) -> str:
    """Run ``call`` through the real CLI and check the refusal; return the error line."""
    before = {p: digest(p) for p in call.watch}
    result = CliRunner().invoke(cli, [str(a) for a in call.args])
    detail = f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.exit_code == 2, f"{detail}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), detail
    assert "Traceback" not in result.output, detail
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), detail
    assert not any(line.startswith("error") for line in result.stdout.splitlines()), detail
    for name in call.names:
        assert name in lines[0], f"{name!r} not in the message:\n{lines[0]}"
    for text in call.banned:
        assert text not in lines[0], f"{text!r} in the message:\n{lines[0]}"
    for path in call.watch:
        assert digest(path) == before[path], f"{path} was written or changed"
    if call.marker is not None:
        assert not call.marker.exists(), "the checkpoint's pickled payload ran"
    return lines[0]


class _RunsOnUnpickle:
    """Unpickles as ``open(marker, "w")``: a payload that runs code when loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def pickled_checkpoint(path: Path, marker: Path, kind: str) -> Path:
    """Write a checkpoint of ``kind`` whose payload creates ``marker`` when unpickled."""
    payload = {"kind": kind, "variant": kind, "config": {}, "info": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "downpour": {**payload, "hook": _RunsOnUnpickle(marker)}}, path)
    return path


def truncated_copy(src: Path, dst: Path) -> Path:
    """Write the first half of ``src`` to ``dst`` (a download or copy cut short)."""
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def text_file(path: Path) -> Path:
    """A text file under a data file's name (``notes.nc``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("station,date,rain\nA,2001-01-01,3.2\n", encoding="utf-8")
    return path


def radar_file(
    path: Path,
    *,
    hours: int = 24,
    size: int = 16,
    units: str = "mm/h",
    times: pd.DatetimeIndex | None = None,
    values: np.ndarray | None = None,
) -> Path:
    """Write a radar NetCDF ``rr`` (time, y, x) on a 2 km projected grid, hourly frames."""
    times = times if times is not None else pd.date_range("2021-07-01", periods=hours, freq="h")
    if values is None:
        values = rain(times.size, size, size, seed=3) / 4.0
    ds = xr.Dataset(
        {"rr": (("time", "y", "x"), values, {"units": units})},
        coords={"time": times, "y": 2000.0 * np.arange(size), "x": 2000.0 * np.arange(size)},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


def save_module(module: Any, path: Path) -> Path:
    """Save an (untrained) training module as `downpour train` writes its checkpoints."""
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


#: The small SRDRN of the corpus's checkpoints.
TINY_SRDRN = ["srdrn.filters=8", "srdrn.res_blocks=2", "srdrn.upsample_filters=8"]
#: Overrides of the second prepared run: the quarter_jan data on a 24×24 grid.
OTHER_GRID = [*QUARTER_JAN, "data.embedded.height=24", "data.embedded.width=24"]


class World:
    """The shared, read-only inputs of the corpus, each built on first use."""

    def __init__(self, request: pytest.FixtureRequest, factory: pytest.TempPathFactory) -> None:
        self.request = request
        self.factory = factory

    @cached_property
    def run(self) -> Path:
        """The session's quarter_jan run (48×36 ← 4×3; train Q1 2001, test January 2002)."""
        return self.request.getfixturevalue("quarter_jan_run")

    @cached_property
    def ckpt_run(self) -> Path:
        """A copy of :attr:`run` with an untrained tiny cVAE and SRDRN checkpoint."""
        from downpour.downscaling.cvae_module import CVAEModule
        from downpour.downscaling.datamodule import read_store_info
        from downpour.downscaling.srdrn_module import SRDRNModule

        run = copy_run(self.run, self.factory.mktemp("corpus") / "run")
        info = read_store_info(run)
        torch.manual_seed(0)
        cfg = load_config("demo", [*QUARTER_JAN, *TINY_CVAE, *TINY_SRDRN])
        save_module(CVAEModule(cfg, info), run / "checkpoints" / "cvae" / "last.ckpt")
        save_module(SRDRNModule(cfg, info), run / "checkpoints" / "srdrn_real" / "best.ckpt")
        return run

    @property
    def cvae(self) -> Path:
        return self.ckpt_run / "checkpoints" / "cvae" / "last.ckpt"

    @property
    def srdrn(self) -> Path:
        return self.ckpt_run / "checkpoints" / "srdrn_real" / "best.ckpt"

    @cached_property
    def other_run(self) -> Path:
        """The quarter_jan data prepared on a 24×24 grid (another dataset for the checkpoints)."""
        run = self.factory.mktemp("corpus_other") / "run"
        prepare(load_config("demo", OTHER_GRID), run)
        return run

    def _samples(self, split: str, days: list[str]) -> Path:
        from downpour.config import SamplingConfig
        from downpour.downscaling.sampling import sample_to_store

        s = SamplingConfig(mode="posterior", members=2, seed=1, pixel_threshold=0.0,
                           days=days, split=split)  # fmt: skip
        out = self.factory.mktemp(f"corpus_{split}") / "samples" / f"posterior_{split}.zarr"
        sample_to_store([self.cvae], self.run / "data" / "store.zarr", s, out, progress=False)
        return out

    @cached_property
    def samples_train(self) -> Path:
        """Two members of two training days (``RUN/samples/posterior_train.zarr``)."""
        return self._samples("train", ["2001-01-05", "2001-01-10"])

    @cached_property
    def samples_test(self) -> Path:
        """Two members of two test days: for evaluation only."""
        return self._samples("test", ["2002-01-05", "2002-01-06"])

    def _piece(self, run: Path, period: str) -> Path:
        from downpour.downscaling.verify import verify_run

        out = self.factory.mktemp("corpus_piece") / "state"
        verify_run(run, checkpoints={}, baselines=("bicubic",), period=period, save_state=out,
                   figures=False, echo=lambda m: None)  # fmt: skip
        return out

    @cached_property
    def piece(self) -> Path:
        """Saved verification state of 2002-01-01..10 of :attr:`run` (bicubic)."""
        return self._piece(self.run, "2002-01-01:2002-01-10")

    @cached_property
    def piece_of_copy(self) -> Path:
        """Saved state of 2002-01-11..20 of :attr:`ckpt_run`: the same data, another run."""
        return self._piece(self.ckpt_run, "2002-01-11:2002-01-20")

    @cached_property
    def nowcaster(self) -> Path:
        """The session's tiny trained nowcaster (``RUN/checkpoints/nowcast/last.ckpt``)."""
        return self.request.getfixturevalue("trained_nowcast")


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The corpus's shared inputs (:class:`World`); torch on one thread meanwhile."""
    with one_torch_thread():
        yield World(request, tmp_path_factory)


CaseFn = Callable[[World, Path], Call]
CASES: dict[str, CaseFn] = {}
XFAIL: dict[str, str] = {}


def case(name: str, xfail: str | None = None) -> Callable[[CaseFn], CaseFn]:
    """Register a corpus case (``command/what``), optionally a known, strict failure."""

    def register(fn: CaseFn) -> CaseFn:
        assert name not in CASES, name
        CASES[name] = fn
        if xfail:
            XFAIL[name] = xfail
        return fn

    return register


def copy_tree(src: Path, dst: Path) -> Path:
    """Copy a store or run directory for a case that modifies it."""
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ prepare


@case("prepare/text-file-named-nc")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    path = text_file(tmp / "pr.nc")
    return Call(["prepare", "--config", inputs.config(), "--out", inputs.out],
                ("data.target", str(path), "not a NetCDF"), (inputs.out,))  # fmt: skip


@case("prepare/predictor-zarr-with-a-chunk-deleted")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    inputs.target()
    q = inputs.predictor(lowres(grid(12, 40.0)), lowres(grid(12, 10.0)))
    store = tmp / "q.zarr"
    xr.open_dataset(q).chunk({"time": 100}).to_zarr(store, zarr_format=3, consolidated=False)
    shutil.rmtree(store / "q" / "c" / "2")  # days 200..299
    cfg = inputs.config({"predictors": [{"path": str(store), "variable": "q"}]})
    return Call(["prepare", "--config", cfg, "--out", inputs.out],
                ("data.predictors[0]", str(store), "2001-07-20"), (inputs.out,))  # fmt: skip


@case("prepare/duplicated-time-stamps")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    times = TIMES.insert(100, TIMES[100])  # 2001-04-11 twice
    path = inputs.target(rain(times.size, 12, 12), times=times)
    return Call(["prepare", "--config", inputs.config(), "--out", inputs.out],
                ("data.target", str(path), "duplicate"), (inputs.out,))  # fmt: skip


@case("prepare/predictor-with-duplicated-time-stamps")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    inputs.target()
    times = TIMES.insert(5, TIMES[5])
    lat, lon = lowres(grid(12, 40.0)), lowres(grid(12, 10.0))
    q = np.ones((times.size, 3, 3), dtype=np.float32)
    path = inputs.predictor(lat, lon, q, times=times)
    cfg = inputs.config({"predictors": [{"path": str(path), "variable": "q"}]})
    return Call(["prepare", "--config", cfg, "--out", inputs.out],
                ("data.predictors[0]", str(path), "duplicate"), (inputs.out,))  # fmt: skip


@case("prepare/target-without-units")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    path = inputs.target()
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    del ds["pr"].attrs["units"]
    ds.to_netcdf(path)
    return Call(["prepare", "--config", inputs.config(), "--out", inputs.out],
                (str(path), "'data.target.units'"), (inputs.out,))  # fmt: skip


@case("prepare/precip-predictor-in-kelvin")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    inputs.target()
    path = inputs.predictor(lowres(grid(12, 40.0)), lowres(grid(12, 10.0)), variable="t2m")
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["t2m"].attrs["units"] = "K"
    ds.to_netcdf(path)
    pred = {"path": str(path), "variable": "t2m", "kind": "precip"}
    cfg = inputs.config({"predictors": [pred]})
    return Call(["prepare", "--config", cfg, "--out", inputs.out],
                ("data.predictors[0]", str(path), "'K'", "'data.predictors[0].units'"),
                (inputs.out,))  # fmt: skip


@case("prepare/predictor-a-day-late")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    inputs.target()
    late = TIMES + pd.Timedelta(days=1)  # misaligned: starts 2001-01-02
    path = inputs.predictor(lowres(grid(12, 40.0)), lowres(grid(12, 10.0)), times=late)
    cfg = inputs.config({"predictors": [{"path": str(path), "variable": "q"}]})
    return Call(["prepare", "--config", cfg, "--out", inputs.out],
                ("data.predictors[0]", str(path), "2001-01-01"), (inputs.out,))  # fmt: skip


@case("prepare/predictor-file-missing")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    inputs.target()
    missing = tmp / "era5" / "q.nc"
    cfg = inputs.config({"predictors": [{"path": str(missing), "variable": "q"}]})
    return Call(["prepare", "--config", cfg, "--out", inputs.out],
                (str(missing), "data.predictors[0].path"), (inputs.out,))  # fmt: skip


@case("prepare/failure-leaves-an-existing-run-unchanged")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    values = rain(N_DAYS, 12, 12)
    values[10, 0, 0] = np.inf
    path = inputs.target(values)
    run = copy_run(w.run, tmp / "run")  # a prepared run: store, card, sources
    return Call(["prepare", "--config", inputs.config(), "--out", run],
                ("data.target", str(path), "infinite"), (run,))  # fmt: skip


@case("prepare/empty-split-from-set")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    inputs.target()
    return Call(["prepare", "--config", inputs.config(), "--out", inputs.out,
                 "--set", "data.splits.val={years: [1999]}"],
                ("data.splits.val",), (inputs.out,))  # fmt: skip


@case("prepare/grid-fit-not-a-choice")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    inputs.target(ny=13, nx=14)
    return Call(["prepare", "--config", inputs.config(), "--out", inputs.out,
                 "--set", "data.grid_fit=stretch"],
                ("data.grid_fit", "'stretch'"), (inputs.out,))  # fmt: skip


# ------------------------------------------------------------------ train cvae / srdrn


@case("train-cvae/unknown-key-in-set")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "run"
    return Call(["train", "cvae", "--out", out, "--set", "train.epoch=5"],
                ("train.epoch", "did you mean 'epochs'"), (out,))  # fmt: skip


@case("train-cvae/negative-rain-in-the-target")
def _(w: World, tmp: Path) -> Call:
    inputs = Inputs(tmp)
    values = rain(N_DAYS, 12, 12)
    values[3, 2, 2] = -3.0
    path = inputs.target(values)
    return Call(["train", "cvae", "--config", inputs.config(), "--out", inputs.out],
                ("data.target", str(path), "negative"), (inputs.out,))  # fmt: skip


@case("train-cvae/resume-from-a-pickled-payload")
def _(w: World, tmp: Path) -> Call:
    marker = tmp / "payload-ran"
    evil = pickled_checkpoint(tmp / "evil.ckpt", marker, "cvae")
    out = tmp / "run"
    return Call(["train", "cvae", "--out", out, "--resume", evil],
                ("--resume", str(evil)), (out,), marker)  # fmt: skip


@case("train-cvae/resume-from-an-srdrn-checkpoint")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "run"
    return Call(["train", "cvae", "--out", out, "--resume", w.srdrn],
                (str(w.srdrn), "cVAE", "SRDRN"), (out,))  # fmt: skip


@case("train-cvae/unknown-preset")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "run"
    return Call(["train", "cvae", "--config", "demoo", "--out", out],
                ("demoo", "presets:"), (out,))  # fmt: skip


@case("train-srdrn/store-missing")
def _(w: World, tmp: Path) -> Call:
    out, store = tmp / "run", tmp / "augmented.zarr"
    return Call(["train", "srdrn", "--out", out, "--store", store], (str(store),), (out, store))


@case("train-srdrn/synthetic-days-in-validation")
def _(w: World, tmp: Path) -> Call:
    store = tmp / "augmented.zarr"
    write_augmented(w.run / "data" / "store.zarr", store, target_factor=2.0,
                    synthetic_split="val")  # fmt: skip
    out = tmp / "run"
    return Call(["train", "srdrn", "--out", out, "--store", store],
                (str(store), "outside the training split"), (out, store))  # fmt: skip


@case("train-srdrn/truncated-resume-checkpoint")
def _(w: World, tmp: Path) -> Call:
    ckpt = truncated_copy(w.srdrn, tmp / "best.ckpt")
    out = tmp / "run"
    return Call(["train", "srdrn", "--out", out, "--resume", ckpt], (str(ckpt),), (out,))


@case("train-srdrn/wrong-type-in-set")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "run"
    return Call(["train", "srdrn", "--out", out, "--set", "srdrn.filters=many"],
                ("srdrn.filters", "'many'"), (out,))  # fmt: skip


# ------------------------------------------------------------------ sample


def _sample(w: World, ckpt: Path, tmp: Path, *extra: Any) -> list[Any]:
    return ["sample", "--checkpoint", ckpt, "--store", w.run, "--out", tmp / "s.zarr", *extra]


@case("sample/srdrn-checkpoint")
def _(w: World, tmp: Path) -> Call:
    return Call(_sample(w, w.srdrn, tmp), (str(w.srdrn), "cVAE", "SRDRN"),
                (tmp / "s.zarr", w.ckpt_run))  # fmt: skip


@case("sample/checkpoint-with-a-pickled-payload")
def _(w: World, tmp: Path) -> Call:
    marker = tmp / "payload-ran"
    evil = pickled_checkpoint(tmp / "checkpoints" / "cvae" / "last.ckpt", marker, "cvae")
    return Call(_sample(w, evil, tmp), (str(evil),), (tmp / "s.zarr", tmp / "samples"), marker)


@case("sample/pickled-payload-message-is-plain")
def _(w: World, tmp: Path) -> Call:
    marker = tmp / "payload-ran"
    evil = pickled_checkpoint(tmp / "last.ckpt", marker, "cvae")
    return Call(_sample(w, evil, tmp), (str(evil),), (tmp / "s.zarr",), marker,
                banned=("\x1b", "can still be loaded"))  # fmt: skip


@case("sample/truncated-checkpoint")
def _(w: World, tmp: Path) -> Call:
    ckpt = truncated_copy(w.cvae, tmp / "last.ckpt")
    return Call(_sample(w, ckpt, tmp), (str(ckpt),), (tmp / "s.zarr",))


@case("sample/checkpoint-missing")
def _(w: World, tmp: Path) -> Call:
    ckpt = tmp / "checkpoints" / "cvae" / "last.ckpt"
    return Call(_sample(w, ckpt, tmp), (str(ckpt), "not found"), (tmp / "s.zarr",))


@case("sample/checkpoint-of-another-grid")
def _(w: World, tmp: Path) -> Call:
    args = ["sample", "--checkpoint", w.cvae, "--store", w.other_run, "--out", tmp / "s.zarr"]
    return Call(args, (str(w.cvae), "48×36", "24×24"), (tmp / "s.zarr", w.other_run))


@case("sample/members-out-of-range")
def _(w: World, tmp: Path) -> Call:
    return Call(_sample(w, w.cvae, tmp, "--set", "sampling.members=0"),
                ("sampling.members",), (tmp / "s.zarr",))  # fmt: skip


# ------------------------------------------------------------------ evaluate


def _evaluate(samples: Path, tmp: Path) -> Call:
    out = tmp / "eval"
    return Call(["evaluate", samples, "--out", out, "--no-figures"], (str(samples),), (out,))


@case("evaluate/corrupt-metadata")
def _(w: World, tmp: Path) -> Call:
    bad = copy_tree(w.samples_train, tmp / "posterior_train.zarr")
    (bad / "samples" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "arr', "utf-8")
    return _evaluate(bad, tmp)


@case("evaluate/chunk-deleted")
def _(w: World, tmp: Path) -> Call:
    bad = copy_tree(w.samples_train, tmp / "posterior_train.zarr")
    shutil.rmtree(bad / "samples" / "c" / "1")  # the second event's members
    return _evaluate(bad, tmp)


@case("evaluate/target-chunk-deleted")
def _(w: World, tmp: Path) -> Call:
    bad = copy_tree(w.samples_train, tmp / "posterior_train.zarr")
    shutil.rmtree(bad / "target" / "c" / "0")
    return _evaluate(bad, tmp)


@case("evaluate/nan-inside-the-mask")
def _(w: World, tmp: Path) -> Call:
    bad = nan_inside_mask(w.samples_train, tmp / "posterior_train.zarr")
    call = _evaluate(bad, tmp)
    call.names += ("NaN",)
    return call


@case("evaluate/truncated-netcdf")
def _(w: World, tmp: Path) -> Call:
    from downpour.downscaling.samples import open_samples, write_samples

    ds = open_samples(w.samples_train).load()
    ds.close()
    for var in ds.variables.values():
        var.encoding = {}
    path = write_samples(ds, tmp / "posterior_train.nc", "netcdf")
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 9 // 10])
    return _evaluate(path, tmp)


@case("evaluate/text-file-named-nc")
def _(w: World, tmp: Path) -> Call:
    return _evaluate(text_file(tmp / "posterior_train.nc"), tmp)


@case("evaluate/missing-store")
def _(w: World, tmp: Path) -> Call:
    return _evaluate(tmp / "samples" / "posterior_train.zarr", tmp)


def nan_inside_mask(src: Path, dst: Path) -> Path:
    """Write a copy of a samples store with one NaN inside the mask (event 0, member 1)."""
    from downpour.downscaling.samples import open_samples, write_samples

    ds = open_samples(src).load()
    ds.close()
    i, j = np.argwhere(ds["mask"].values)[0]
    values = ds["samples"].values.copy()
    values[0, 1, i, j] = np.nan
    ds["samples"] = ds["samples"].copy(data=values)
    for var in ds.variables.values():
        var.encoding = {}
    write_samples(ds, dst)
    return dst


# ------------------------------------------------------------------ augment


def _augment(w: World, samples: Path, tmp: Path, *extra: Any) -> list[Any]:
    return ["augment", samples, "--store", w.run, "--out", tmp / "augmented.zarr", *extra]


@case("augment/samples-of-test-days")
def _(w: World, tmp: Path) -> Call:
    return Call(_augment(w, w.samples_test, tmp), (str(w.samples_test), "'test'"),
                (tmp / "augmented.zarr", w.samples_test.parents[1]))  # fmt: skip


@case("augment/nan-inside-the-mask")
def _(w: World, tmp: Path) -> Call:
    bad = nan_inside_mask(w.samples_train, tmp / "samples" / "posterior_train.zarr")
    return Call(_augment(w, bad, tmp), (str(bad), "NaN"), (tmp / "augmented.zarr",))


@case("augment/store-of-another-grid")
def _(w: World, tmp: Path) -> Call:
    args = ["augment", w.samples_train, "--store", w.other_run, "--out", tmp / "a.zarr"]
    return Call(args, (str(w.samples_train),), (tmp / "a.zarr",))


@case("augment/more-members-than-sampled")
def _(w: World, tmp: Path) -> Call:
    return Call(_augment(w, w.samples_train, tmp, "--set", "augment.per_event=5"),
                ("augment.per_event",), (tmp / "augmented.zarr",))  # fmt: skip


@case("augment/samples-missing")
def _(w: World, tmp: Path) -> Call:
    missing = tmp / "samples" / "posterior_train.zarr"
    return Call(_augment(w, missing, tmp), (str(missing),), (tmp / "augmented.zarr",))


# ------------------------------------------------------------------ verify, verify-merge


@case("verify/srdrn-of-another-grid")
def _(w: World, tmp: Path) -> Call:
    run = copy_run(w.other_run, tmp / "run")
    args = ["verify", run, "--checkpoint", f"srdrn_real={w.srdrn}", "--no-figures",
            "--n-boot", "10"]  # fmt: skip
    return Call(args, (str(w.srdrn), "use a checkpoint of this dataset"), (run,))


@case("verify/cvae-checkpoint")
def _(w: World, tmp: Path) -> Call:
    run = copy_run(w.run, tmp / "run")
    args = ["verify", run, "--checkpoint", f"srdrn_real={w.cvae}", "--no-figures"]
    return Call(args, (str(w.cvae), "SRDRN", "cVAE"), (run,))


@case("verify/checkpoint-with-a-pickled-payload")
def _(w: World, tmp: Path) -> Call:
    run = copy_run(w.run, tmp / "run")
    marker = tmp / "payload-ran"
    evil = pickled_checkpoint(tmp / "srdrn_real.ckpt", marker, "srdrn")
    args = ["verify", run, "--checkpoint", f"srdrn_real={evil}", "--no-figures"]
    return Call(args, (str(evil),), (run,), marker)


@case("verify/truncated-checkpoint")
def _(w: World, tmp: Path) -> Call:
    run = copy_run(w.run, tmp / "run")
    ckpt = truncated_copy(w.srdrn, tmp / "srdrn_real.ckpt")
    args = ["verify", run, "--checkpoint", f"srdrn_real={ckpt}", "--no-figures"]
    return Call(args, (str(ckpt),), (run,))


@case("verify/run-without-a-store")
def _(w: World, tmp: Path) -> Call:
    run = tmp / "run"
    run.mkdir()
    return Call(["verify", run, "--no-figures"], (str(run / "data" / "store.zarr"),), (run,))


@case("verify/unknown-split")
def _(w: World, tmp: Path) -> Call:
    run = copy_run(w.run, tmp / "run")
    return Call(["verify", run, "--split", "tset", "--no-figures"], ("'tset'",), (run,))


@case("verify/store-with-a-chunk-deleted")
def _(w: World, tmp: Path) -> Call:
    run = copy_run(w.run, tmp / "run")
    store = run / "data" / "store.zarr"
    last = max((store / "target" / "c").iterdir(), key=lambda p: int(p.name))
    shutil.rmtree(last)  # the target of the last test day
    return Call(["verify", run, "--no-figures", "--n-boot", "10"], (str(store),),
                (run / "metrics", run / "figures"))  # fmt: skip


@case("verify/save-state-over-another-folder")
def _(w: World, tmp: Path) -> Call:
    run = copy_run(w.run, tmp / "run")
    folder = tmp / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me\n")
    args = ["verify", run, "--period", "2002-01:2002-01-10", "--save-state", folder]
    return Call(args, ("--save-state", str(folder)), (run, folder))


@case("verify-merge/pieces-of-different-runs")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "verify.json"
    return Call(["verify-merge", w.piece, w.piece_of_copy, "--out", out, "--n-boot", "10"],
                (str(w.piece), str(w.piece_of_copy), "run"), (out,))  # fmt: skip


@case("verify-merge/folder-without-manifest")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "verify.json"
    empty = tmp / "piece"
    empty.mkdir()
    return Call(["verify-merge", w.piece, empty, "--out", out],
                (str(empty), "manifest.json"), (out,))  # fmt: skip


@case("verify-merge/same-piece-twice")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "verify.json"
    return Call(["verify-merge", w.piece, w.piece, "--out", out], (str(w.piece),), (out,))


# ------------------------------------------------------------------ nowcast


def _nowcast_train(tmp: Path, path: Path, *extra: str) -> Call:
    out = tmp / "run"
    args = ["nowcast", "train", "--out", out, "--set", f"nowcast.target.path={path}",
            "--set", "nowcast.target.variable=rr", *extra]  # fmt: skip
    return Call(args, (str(path),), (out,))


@case("nowcast-train/radar-file-missing")
def _(w: World, tmp: Path) -> Call:
    call = _nowcast_train(tmp, tmp / "radar" / "rr.nc")
    call.names += ("nowcast.target",)
    return call


@case("nowcast-train/duplicated-frames")
def _(w: World, tmp: Path) -> Call:
    times = pd.date_range("2021-07-01", periods=24, freq="h")
    return _nowcast_train(tmp, radar_file(tmp / "rr.nc", times=times.insert(7, times[7])))


@case("nowcast-train/temperature-units")
def _(w: World, tmp: Path) -> Call:
    call = _nowcast_train(tmp, radar_file(tmp / "rr.nc", units="K"))
    call.names += ("'K'", "nowcast.target.units")
    return call


@case("nowcast-train/text-file-named-nc")
def _(w: World, tmp: Path) -> Call:
    return _nowcast_train(tmp, text_file(tmp / "rr.nc"))


@case("nowcast-train/inf-in-the-radar")
def _(w: World, tmp: Path) -> Call:
    values = rain(24, 16, 16, seed=3)
    values[5, 3, 3] = np.inf
    call = _nowcast_train(tmp, radar_file(tmp / "rr.nc", values=values))
    call.names += ("infinite",)
    return call


@case("nowcast-train/wrong-shape-in-set")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "run"
    return Call(["nowcast", "train", "--out", out, "--set", "nowcast.n_frames=[3, 4]"],
                ("nowcast.n_frames",), (out,))  # fmt: skip


def _forecast(w: World, ckpt: Path, tmp: Path, *extra: Any) -> Call:
    out = tmp / "fc.zarr"
    args = ["nowcast", "forecast", "--checkpoint", ckpt, "--init", "2021-07-01T05:00",
            "--hours", "1", "--out", out, *extra]  # fmt: skip
    return Call(args, (str(ckpt),), (out,))


@case("nowcast-forecast/cvae-checkpoint")
def _(w: World, tmp: Path) -> Call:
    call = _forecast(w, w.cvae, tmp)
    call.names += ("nowcast", "cVAE")
    return call


@case("nowcast-forecast/checkpoint-with-a-pickled-payload")
def _(w: World, tmp: Path) -> Call:
    marker = tmp / "payload-ran"
    call = _forecast(w, pickled_checkpoint(tmp / "last.ckpt", marker, "nowcast"), tmp)
    call.marker = marker
    return call


@case("nowcast-forecast/truncated-checkpoint")
def _(w: World, tmp: Path) -> Call:
    return _forecast(w, truncated_copy(w.nowcaster, tmp / "last.ckpt"), tmp)


@case("nowcast-forecast/source-without-the-variable")
def _(w: World, tmp: Path) -> Call:
    src = radar_file(tmp / "radar.nc")
    call = _forecast(w, w.nowcaster, tmp, "--source", src, "--variable", "dbz")
    call.names = (str(src), "'dbz'")
    call.watch += (w.nowcaster.parents[2],)
    return call


@case("nowcast-forecast/init-before-the-first-frames")
def _(w: World, tmp: Path) -> Call:
    call = _forecast(w, w.nowcaster, tmp)
    call.args[call.args.index("--init") + 1] = "2021-06-30T12:00"
    call.names = ("--init", "2021-06-30")
    call.watch += (w.nowcaster.parents[2],)
    return call


@case("nowcast-verify/srdrn-checkpoint")
def _(w: World, tmp: Path) -> Call:
    out = tmp / "run"
    return Call(["nowcast", "verify", "--checkpoint", w.srdrn, "--out", out],
                (str(w.srdrn), "nowcast", "SRDRN"), (out,))  # fmt: skip


@case("nowcast-verify/truncated-source")
def _(w: World, tmp: Path) -> Call:
    src = radar_file(tmp / "radar.nc")
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    out = tmp / "run"
    return Call(["nowcast", "verify", "--checkpoint", w.nowcaster, "--source", src,
                 "--variable", "rr", "--out", out, "--no-extrapolation"],
                (str(src),), (out, w.nowcaster.parents[2]))  # fmt: skip


# ------------------------------------------------------------------ config and --set


@case("config/unknown-preset")
def _(w: World, tmp: Path) -> Call:
    return Call(["config", "--config", "nowcastt"], ("nowcastt", "presets:", "nowcast"))


@case("config/base-loop")
def _(w: World, tmp: Path) -> Call:
    a, b = tmp / "a.yaml", tmp / "b.yaml"
    a.write_text("base: b.yaml\ntrain: {epochs: 2}\n", encoding="utf-8")
    b.write_text("base: a.yaml\n", encoding="utf-8")
    return Call(["config", "--config", a], ("'base'", "loops"))


@case("config/base-missing")
def _(w: World, tmp: Path) -> Call:
    a = tmp / "a.yaml"
    a.write_text("base: common.yaml\n", encoding="utf-8")
    return Call(["config", "--config", a], (str(tmp / "common.yaml"), "not found"))


@case("config/set-without-equals")
def _(w: World, tmp: Path) -> Call:
    return Call(["config", "--set", "train.epochs"], ("--set", "'train.epochs'", "key=value"))


@case("config/set-unknown-key")
def _(w: World, tmp: Path) -> Call:
    return Call(["config", "--set", "sampling.member=3"],
                ("sampling.member", "did you mean 'members'"))  # fmt: skip


@case("config/set-wrong-type")
def _(w: World, tmp: Path) -> Call:
    return Call(["config", "--set", "data.scale_factor=twelve"],
                ("data.scale_factor", "'twelve'"))  # fmt: skip


@case("config/set-value-of-the-wrong-shape")
def _(w: World, tmp: Path) -> Call:
    return Call(["config", "--set", "data.splits.train=2001"], ("data.splits.train",))


@case("config/set-into-a-value")
def _(w: World, tmp: Path) -> Call:
    return Call(["config", "--set", "name=x", "--set", "name.first=y"],
                ("--set", "'name.first=y'", "'name'"))  # fmt: skip


@case("config/two-bad-values-one-line")
def _(w: World, tmp: Path) -> Call:
    return Call(["config", "--set", "train.epochs=many", "--set", "train.batch_size=big"],
                ("train.epochs", "train.batch_size"))  # fmt: skip


@case("config/invalid-yaml")
def _(w: World, tmp: Path) -> Call:
    cfg = tmp / "cfg.yaml"
    cfg.write_text("name: x\ntrain:\n  epochs: 4\n   seed: [1\n", encoding="utf-8")
    return Call(["config", "--config", cfg], (str(cfg), "not valid YAML", "line"))


@case("config/not-a-mapping")
def _(w: World, tmp: Path) -> Call:
    cfg = tmp / "cfg.yaml"
    cfg.write_text("- train\n- epochs\n", encoding="utf-8")
    return Call(["config", "--config", cfg], (str(cfg), "mapping"))


# ------------------------------------------------------------------ the test


def _params() -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=XFAIL[name]))
        if name in XFAIL
        else name
        for name in CASES
    ]


@pytest.mark.parametrize("name", _params())
def test_bad_input_is_refused(name: str, world: World, tmp_path: Path) -> None:
    call = CASES[name](world, tmp_path)
    check_refused(call)


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 40


def test_the_pickled_payload_is_live(tmp_path: Path) -> None:
    # the crafted checkpoint of the corpus does run code when loaded unsafely: the
    # refusals above are therefore real
    marker = tmp_path / "ran"
    path = pickled_checkpoint(tmp_path / "evil.ckpt", marker, "cvae")
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_refusal_in_a_real_process(tmp_path: Path) -> None:
    # the console script: status 2, the one line on stderr, nothing on stdout
    marker = tmp_path / "payload-ran"
    evil = pickled_checkpoint(tmp_path / "last.ckpt", marker, "nowcast")
    exe = Path(sys.executable).with_name("downpour")
    command = [str(exe)] if exe.is_file() else [sys.executable, "-m", "downpour.cli.main"]
    proc = subprocess.run(
        [*command, "nowcast", "forecast", "--checkpoint", str(evil), "--init", "2021-07-01"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert str(evil) in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
