"""Bad input stops `downpour prepare` with one clear message (DESIGN.md §4).

Every test runs the real CLI through ``click.testing.CliRunner`` on small
NetCDF files written to ``tmp_path`` and checks that

- the exit status is 2 and the output is one ``error:`` message that names the
  file, variable and/or config key involved and says what to do,
- there is no traceback,
- nothing was left behind in the run directory (no store, card, config, or
  temporary ``.*.tmp`` entries).

The default input set: target ``pr`` (time, lat, lon), daily 2001-01-01 ..
2002-12-31 (730 days) on a 12×12 grid (lat 40.0..41.1, lon 10.0..11.1, step
0.1), units mm/day; scale factor 4 (low-res 3×3); splits train 2001, val
2002-01-01..2002-06-30, test 2002-07-01..2002-12-31.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner, Result

from downpour.cli.main import cli
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
