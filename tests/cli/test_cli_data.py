"""`downpour config` and `downpour prepare` on a small file set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner

from downpour.cli.main import cli
from downpour.config import Config, load_config
from downpour.downscaling.store import open_store

TIMES = pd.date_range("2001-01-01", "2002-12-31", freq="D")  # 730 days
N_DAYS = TIMES.size
SIZE, FACTOR = 12, 4
MISSING_CELL = (5, 5)  # NaN on one day: partially missing, so outside the mask
DAYS = {"train": 365, "val": 181, "test": 184}
DATES = {
    "train": ("2001-01-01", "2001-12-31"),
    "val": ("2002-01-01", "2002-06-30"),
    "test": ("2002-07-01", "2002-12-31"),
}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def flat(text: str) -> str:
    """Collapse whitespace (rich wraps long lines at the console width)."""
    return " ".join(text.split())


def test_prepare_help_shows_options() -> None:
    code, out = invoke("prepare", "--help")
    assert code == 0
    assert "prepare [OPTIONS]" in out
    for option in ("--config", "--set", "--out", "SECTION.KEY=VALUE"):
        assert option in out
    assert "Build the chunked zarr training store" in out


def test_config_set_integer() -> None:
    code, out = invoke("config", "--set", "train.epochs=7")
    assert code == 0
    assert re.search(r"^  epochs: 7$", out, flags=re.M)
    resolved = yaml.safe_load(out)
    assert resolved["train"]["epochs"] == 7
    # everything else keeps its default
    defaults = Config().model_dump(mode="json")
    defaults["train"]["epochs"] = 7
    assert resolved == defaults


def test_config_set_exponent_is_a_number() -> None:
    code, out = invoke("config", "--set", "loss.beta_kl=1e-3")
    assert code == 0
    assert re.search(r"^  beta_kl: 0\.001$", out, flags=re.M)
    value = yaml.safe_load(out)["loss"]["beta_kl"]
    assert isinstance(value, float)
    assert value == 0.001


def test_config_output_reads_back(tmp_path: Path) -> None:
    overrides = ("train.epochs=7", "loss.beta_kl=1e-3", "data.splits.val.years=[2003]")
    code, out = invoke("config", *[a for o in overrides for a in ("--set", o)])
    assert code == 0
    path = tmp_path / "resolved.yaml"
    path.write_text(out, encoding="utf-8")
    assert load_config(path) == load_config(None, overrides)
    assert load_config(path).data.splits.val.years == [2003]


def test_config_set_wrong_type_is_a_clean_error() -> None:
    code, out = invoke("config", "--set", "train.epochs=many")
    assert code == 2
    assert out.startswith("error: ")
    assert "'train.epochs'" in out and "--set train.epochs=many" in out and "'many'" in out


@pytest.fixture
def file_set(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Target ``pr`` (730 days, 12×12, mm/day) with one NaN, and a config; return both."""
    rng = np.random.default_rng(7)
    values = rng.gamma(0.5, 4.0, (N_DAYS, SIZE, SIZE))
    values[values < 0.5] = 0.0
    values = values.astype(np.float32)
    values[(10, *MISSING_CELL)] = np.nan
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), values, {"units": "mm/day"})},
        coords={
            "time": TIMES,
            "lat": 40.0 + 0.1 * np.arange(SIZE),
            "lon": 10.0 + 0.1 * np.arange(SIZE),
        },
    )
    nc = tmp_path / "pr.nc"
    ds.to_netcdf(nc)
    cfg = {
        "name": "clitest",
        "data": {
            "target": {"path": str(nc), "variable": "pr", "kind": "precip"},
            "scale_factor": FACTOR,
            "splits": {
                "train": {"years": [2001]},
                "val": {"start": DATES["val"][0], "end": DATES["val"][1]},
                "test": {"start": DATES["test"][0], "end": DATES["test"][1]},
            },
        },
        "train": {"epochs": 3},
    }
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return cfg_path, values


def expected_card_values(values: np.ndarray) -> dict:
    """Recompute the card's numbers from the raw file values."""
    mask = np.isfinite(values).all(axis=0)
    y = np.where(mask, values, 0.0).astype(np.float32)
    split = np.where(TIMES.year == 2001, "train", np.where(TIMES.month <= 6, "val", "test"))
    train = split == "train"
    vals = y[train][:, mask]
    stat = y[:, mask].astype(np.float64).mean(axis=1)
    threshold = float(np.quantile(stat[train], 0.95))
    per_split = {}
    for s in DAYS:
        v = y[split == s][:, mask]
        per_split[s] = {
            "wet_fraction": float((v >= 0.1).mean()),
            "mean": float(v.mean()),
            "max": float(v.max()),
            "heavy_days": int((stat[split == s] >= threshold).sum()),
        }
    return {
        "mask": mask,
        "y": y,
        "split": split,
        "thresholds": np.percentile(vals[vals > 0.1], [90, 95, 99]),
        "heavy_threshold": threshold,
        "splits": per_split,
    }


def test_prepare_on_files(tmp_path: Path, file_set: tuple[Path, np.ndarray]) -> None:
    cfg_path, values = file_set
    out = tmp_path / "run"
    code, text = invoke("prepare", "--config", str(cfg_path), "--out", str(out))
    assert code == 0, text
    exp = expected_card_values(values)

    # the data card table: one row per split with its dates, days, wet fraction, heavy days
    for s, days in DAYS.items():
        e = exp["splits"][s]
        row = (
            rf"│ {s}\s*│ {DATES[s][0]}\.\.{DATES[s][1]} │\s*{days} │\s*{e['wet_fraction']:.3f} │"
            rf"\s*{e['mean']:.2f} │\s*{e['max']:.1f} │\s*{e['heavy_days']} │"
        )
        assert re.search(row, text), f"no row {row!r} in\n{text}"
    p90, p95, p99 = exp["thresholds"]
    assert f"P90 {p90:.1f} P95 {p95:.1f} P99 {p99:.1f} mm/day" in flat(text)
    assert "valid cells 143 (99%)" in flat(text)
    assert "unused days 0; negative values clipped 0" in flat(text)

    # config.yaml: the resolved config, which reads back into an equal Config
    saved = out / "config.yaml"
    assert saved.is_file()
    assert load_config(saved) == load_config(cfg_path)
    assert load_config(saved).train.epochs == 3

    # card.json
    card = json.loads((out / "data" / "card.json").read_text(encoding="utf-8"))
    assert card["name"] == "clitest"
    assert card["units"] == "mm/day"
    assert {s: card["splits"][s]["days"] for s in DAYS} == DAYS
    for s in DAYS:
        assert (card["splits"][s]["start"], card["splits"][s]["end"]) == DATES[s]
        for key in ("wet_fraction", "mean", "max"):
            assert card["splits"][s][key] == pytest.approx(exp["splits"][s][key], rel=1e-5)
        assert card["splits"][s]["heavy_days"] == exp["splits"][s]["heavy_days"]
    th = card["thresholds"]
    assert [th["P90"], th["P95"], th["P99"]] == pytest.approx(list(exp["thresholds"]), rel=1e-6)
    assert card["heavy"]["threshold"] == pytest.approx(exp["heavy_threshold"], rel=1e-9)
    assert card["grid"]["high_res"] == [12, 12]
    assert card["grid"]["low_res"] == [3, 3]
    assert card["grid"]["scale_factor"] == FACTOR
    assert card["grid"]["valid_cells"] == 143
    assert card["partially_missing_cells"] == 1
    assert card["unused_days"] == 0
    assert card["clipped_negative_values"] == 0
    assert card["channels"] == ["pr_coarse"]
    assert card["static_channels"] == ["mask", "lat", "lon"]
    assert card["shapes"] == {"y": [N_DAYS, 12, 12], "x": [N_DAYS, 1, 3, 3], "static": [3, 12, 12]}

    # store.zarr
    assert (out / "data" / "normalization.json").is_file()
    store = open_store(out / "data" / "store.zarr")
    np.testing.assert_array_equal(store["mask"].values, exp["mask"])
    assert not store["mask"].values[MISSING_CELL]
    np.testing.assert_array_equal(store["target"].values, exp["y"])
    assert [str(s) for s in store["split"].values] == list(exp["split"])
    assert list(store["channel"].values) == ["pr_coarse"]
    # perfect prognosis: the predictor is the 4×4 block mean of the target
    # (block (1, 1) holds the partially missing cell and is left out here)
    x = store["predictors"].values[:, 0]
    blocks = values.reshape(N_DAYS, 3, FACTOR, 3, FACTOR).mean(axis=(2, 4))
    keep = np.ones((3, 3), dtype=bool)
    keep[1, 1] = False
    np.testing.assert_allclose(x[:, keep], blocks[:, keep], rtol=1e-5)
    assert not list(out.rglob(".*.tmp"))
