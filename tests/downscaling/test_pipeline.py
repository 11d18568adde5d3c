"""The main job end to end (DESIGN.md §1): embedded data and the real ERA5-Land file."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from _shared import HALF_YEAR, ROOT, TINY_GENERATOR
from downpour.config import load_config
from downpour.downscaling.pipeline import augmentation_verdict, run_pipeline

TINY_SRDRN = [
    "srdrn.filters=4",
    "srdrn.res_blocks=1",
    "srdrn.upsample_filters=8",
    "srdrn.batch_size=8",
    "srdrn.epochs=1",
    "srdrn.batches_per_epoch=3",
    "sampling.members=2",
    "augment.per_event=2",
]
ERA5 = ROOT.parent / "shared" / "data" / "era5land_quebec_1970.nc"


def assert_run_complete(run: Path, res) -> None:
    # the demo's generator (arch lowres) samples in prior mode only: no posterior store
    assert not (run / "samples" / "posterior_train.zarr").exists()
    for rel in (
        "config.yaml", "data/store.zarr", "data/augmented.zarr", "samples/prior_train.zarr",
        "metrics/sample_quality.json", "metrics/verify.json",
        "metrics/train_srdrn_real.json", "metrics/train_srdrn_augmented.json", "report.html",
        "checkpoints/srdrn_real", "checkpoints/srdrn_augmented", "figures/verify_maps.png",
        "checkpoints/qsrdrn_real", "checkpoints/qsrdrn_augmented",
        "figures/verify_quantile_reliability.png", "figures/verify_reliability_diagrams.png",
    ):  # fmt: skip
        assert (run / rel).exists(), rel
    models = {"srdrn_real", "srdrn_augmented", "qsrdrn_real", "qsrdrn_augmented", "bicubic", "bcsd"}
    heads = {f"qsrdrn_{v} q{t}" for v in ("real", "augmented") for t in ("0.95", "0.99", "0.999")}
    assert set(res.verification["models"]) == models | heads
    for pair in ("srdrn_augmented − srdrn_real", "qsrdrn_real − srdrn_real",
                 "qsrdrn_augmented − qsrdrn_real", "qsrdrn_real − bicubic"):  # fmt: skip
        assert pair in res.verification["differences"], pair
    prob = res.verification["probabilistic"]
    assert set(prob["quantile_models"]) == {"qsrdrn_real", "qsrdrn_augmented"}
    assert set(prob["probability_models"]) == {"srdrn_real", "srdrn_augmented", "bicubic", "bcsd"}
    assert "qsrdrn_real − bcsd" in prob["probability_differences"]
    # same seed, same optimiser steps for every SRDRN variant
    steps = {
        kind: json.loads((run / "metrics" / f"train_{kind}.json").read_text())["optimizer_steps"]
        for kind in ("srdrn_real", "srdrn_augmented", "qsrdrn_real", "qsrdrn_augmented")
    }
    assert set(steps.values()) == {3}, steps
    # the augmented store holds no test day, and its synthetic days are training days
    ag = xr.open_zarr(run / "data" / "augmented.zarr", consolidated=False)
    split = np.array([str(s) for s in ag["split"].values])
    assert "test" not in split and set(split[ag["is_synthetic"].values]) == {"train"}
    assert res.report.read_text().count("data:image/png;base64,") >= 10
    # the generator scored as a probabilistic downscaler beside the deterministic models
    gen = res.verification["generator"]
    assert gen["members"] == 16 and gen["mode"] == "prior"
    assert set(gen["crps_minus_mae"]) >= {"srdrn_real", "srdrn_augmented", "bicubic", "bcsd"}
    assert 0 < gen["ensemble"]["crps_fair"] <= gen["ensemble"]["crps_ecdf"]
    assert "Generator as a probabilistic downscaler" in res.report.read_text()


def test_embedded_pipeline(tmp_path):
    over = [*HALF_YEAR, *TINY_GENERATOR, "train.epochs=1", "train.max_batches_per_epoch=4"]
    cfg = load_config("demo", [*over, *TINY_SRDRN])
    res = run_pipeline(cfg, tmp_path / "demo", echo=lambda m: None, n_boot=50, progress=False)
    assert_run_complete(tmp_path / "demo", res)
    assert res.verdict == augmentation_verdict(res.verification)
    assert res.verdict.split(" (")[0] in res.report.read_text()


@pytest.mark.skipif(not ERA5.is_file(), reason="../shared/data/era5land_quebec_1970.nc absent")
def test_era5land_pipeline(tmp_path):
    cfg = load_config(
        str(ROOT / "examples" / "configs" / "era5land_quebec.yaml"),
        [*TINY_SRDRN, *TINY_GENERATOR, "train.epochs=1", "train.max_batches_per_epoch=4",
         "data.heavy.quantile=0.8"],
    )  # fmt: skip
    res = run_pipeline(cfg, tmp_path / "era5", echo=lambda m: None, n_boot=50, progress=False)
    assert_run_complete(tmp_path / "era5", res)
    ds = xr.open_zarr(tmp_path / "era5" / "data" / "store.zarr", consolidated=False)
    n_test = int((np.array([str(s) for s in ds["split"].values]) == "test").sum())
    assert n_test == 61  # 1970-11-01 .. 1970-12-31
    assert res.verification["models"]["bcsd"]["n_days"] == n_test
