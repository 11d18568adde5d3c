"""downpour verify: several downscalers on the same test days, paired differences, JSON, figures."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from _shared import record_days
from downpour.core.errors import DownpourError
from downpour.downscaling.verify import verify_models, verify_run


def fields(rng, days=40, h=12, w=10):
    truth = rng.gamma(0.5, 8.0, size=(days, h, w)) * (rng.random((days, h, w)) < 0.6)
    times = np.arange(days).astype("datetime64[D]").astype("datetime64[ns]")

    def da(a):
        return xr.DataArray(a, dims=("time", "y", "x"), coords={"time": times})

    return da, truth


def test_perfect_model_beats_a_shuffled_one_significantly():
    rng = np.random.default_rng(0)
    da, truth = fields(rng)
    mask = np.ones(truth.shape[1:], bool)
    preds = {"perfect": da(truth), "shuffled": da(truth[rng.permutation(len(truth))])}
    res = verify_models(preds, da(truth), mask, {"P95": 15.0, "5mm": 5.0},
                        pairs=[("perfect", "shuffled")], n_boot=200, batch_days=7)  # fmt: skip
    perfect = res["models"]["perfect"]
    assert perfect["categorical"]["P95"]["csi"] == 1.0
    assert perfect["continuous"]["correlation"] == pytest.approx(1.0)
    assert perfect["continuous"]["mae"] == 0.0
    d = res["differences"]["perfect − shuffled"]
    assert d["categorical"]["P95"]["csi"]["significant"]
    assert d["categorical"]["P95"]["csi"]["low"] > 0
    # the estimate of a difference is the difference of the estimates
    shuffled = res["models"]["shuffled"]
    assert d["continuous"]["mae"]["estimate"] == pytest.approx(
        perfect["continuous"]["mae"] - shuffled["continuous"]["mae"]
    )
    # the significance lines and the table of this result: tests/report/test_tables.py


def test_prediction_on_other_days_is_refused():
    rng = np.random.default_rng(2)
    da, truth = fields(rng, days=10)
    other = da(truth).assign_coords(time=da(truth).time + np.timedelta64(1, "D"))
    with pytest.raises(DownpourError, match="'late' covers other days"):
        verify_models({"late": other}, da(truth), None, {"P95": 10.0})


def test_verify_run_with_baselines(sampled_run, tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "store.zarr").symlink_to(sampled_run / "data" / "store.zarr")
    res = verify_run(run, checkpoints={}, n_boot=50, echo=lambda m: None)
    saved = json.loads((run / "metrics" / "verify.json").read_text())
    store = xr.open_zarr(sampled_run / "data" / "store.zarr", consolidated=False)
    thr = json.loads(store.attrs["thresholds"])
    assert saved["thresholds"] == {"P95": thr["P95"], "P99": thr["P99"], "10mm": 10.0, "20mm": 20.0}
    test_days = int((np.array([str(s) for s in store["split"].values]) == "test").sum())
    assert res["models"]["bicubic"]["n_days"] == test_days
    assert set(saved["models"]) == {"bicubic", "bcsd"}
    est, low, high = saved["headline"]["CSI P95 bcsd"]
    assert low <= est <= high
    for fig in ("verify_maps", "verify_scores"):
        assert (run / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"


def test_verify_refuses_an_augmented_store(tmp_path, sampled_run):
    from downpour.config import AugmentConfig
    from downpour.downscaling.augment import augment

    aug = tmp_path / "aug.zarr"
    augment(sampled_run / "data" / "store.zarr", [sampled_run / "samples" / "posterior_train.zarr"],
            aug, AugmentConfig(per_event=1), echo=lambda m: None)  # fmt: skip
    with pytest.raises(DownpourError, match="holds synthetic days; verify against the real"):
        verify_run(tmp_path, store=aug, checkpoints={}, n_boot=10, echo=lambda m: None)


# --------------------------------------------- verifying a period's days


def test_verify_period_predicts_only_its_days(quarter_jan_run, srdrn_ckpt, monkeypatch, tmp_path):
    from downpour.downscaling.verify import verify_run
    from downpour.models.baselines import Bicubic
    from downpour.models.srdrn import SRDRN

    bicubic_days = record_days(monkeypatch, Bicubic, "predict")
    srdrn_days = record_days(monkeypatch, SRDRN, "forward")
    manifest = verify_run(quarter_jan_run, checkpoints={"srdrn": srdrn_ckpt},
                          baselines=("bicubic",), period="2002-01-05:2002-01-14",
                          save_state=tmp_path / "s", echo=lambda m: None)  # fmt: skip
    assert manifest["n_days"] == 10 and manifest["days"] == ["2002-01-05", "2002-01-14"]
    assert sum(bicubic_days) == 10 and sum(srdrn_days) == 10  # not the 31 days of the split


# --------------------------------------------- merging pieces of another run or checkpoint


def test_merge_refuses_pieces_of_another_checkpoint_run_or_store(
    srdrn_ckpt, quarter_jan_run, tmp_path
):
    run = quarter_jan_run
    import torch

    from downpour.downscaling.verify import merge_states, verify_run

    ckpt = tmp_path / "run_ckpt" / "best.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(srdrn_ckpt.read_bytes())

    def piece(period: str, out: Path) -> Path:
        verify_run(run, checkpoints={"srdrn_real": ckpt}, baselines=("bicubic",), period=period,
                   save_state=out, echo=lambda m: None)  # fmt: skip
        return out

    first = piece("2002-01-01:2002-01-15", tmp_path / "first")
    second = piece("2002-01-16:2002-01-31", tmp_path / "second")
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["run"] == str(run.resolve())
    assert manifest["checkpoints"] == {"srdrn_real": str(ckpt.resolve())}
    assert len(manifest["checkpoint_sha256"]["srdrn_real"]) == 64
    merged = merge_states([first, second], tmp_path / "ok.json", n_boot=20, echo=lambda m: None)
    assert merged["models"]["srdrn_real"]["n_days"] == 31

    # retrained between the pieces: same path, other weights
    state = torch.load(ckpt, weights_only=False)
    state["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v
                           for k, v in state["state_dict"].items()}  # fmt: skip
    torch.save(state, ckpt)
    retrained = piece("2002-01-16:2002-01-31", tmp_path / "retrained")
    with pytest.raises(DownpourError) as err:
        merge_states([first, retrained], tmp_path / "bad.json", echo=lambda m: None)
    msg = str(err.value)
    assert str(first) in msg and str(retrained) in msg
    assert "checkpoint_sha256['srdrn_real']" in msg and "retrained or replaced" in msg
    assert "verify all pieces against the same run, store and checkpoints" in msg
    assert not (tmp_path / "bad.json").exists()

    # another run, store or checkpoint path in the manifest
    for key, value in (("run", "/elsewhere/run"), ("store", "/elsewhere/store.zarr"),
                       ("checkpoints", {"srdrn_real": "/elsewhere/best.ckpt"})):  # fmt: skip
        other = tmp_path / f"other_{key}"
        other.mkdir()
        for f in second.iterdir():
            (other / f.name).write_bytes(f.read_bytes())
        m = json.loads((other / "manifest.json").read_text())
        m[key] = value
        (other / "manifest.json").write_text(json.dumps(m))
        expected = re.escape(f"pieces {first} and {other} differ in {key}")
        with pytest.raises(DownpourError, match=expected):
            merge_states([first, other], tmp_path / "bad.json", echo=lambda m: None)
