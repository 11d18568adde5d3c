"""verify with a quantile SRDRN: heads as fields, quantile reliability, exceedance probabilities."""

import json

import numpy as np
import pytest
import xarray as xr

from _shared import QUARTER_JAN, copy_run
from downpour.config import load_config
from downpour.downscaling.predict import predict_baseline, predict_srdrn
from downpour.downscaling.store import labels, open_store
from downpour.downscaling.train import train_srdrn
from downpour.downscaling.verify import merge_states, verify_run
from downpour.downscaling.verify_probabilistic import (
    accumulate_probabilistic,
    score_probabilistic,
    split_heads,
    training_climatology,
)
from downpour.metrics.exceedance import exceedance_probability
from downpour.report.html import write_report

pytestmark = pytest.mark.usefixtures("one_thread")

TAUS = [0.5, 0.9, 0.99]
TINY = [
    *QUARTER_JAN,
    "srdrn.filters=8",
    "srdrn.res_blocks=2",
    "srdrn.upsample_filters=8",
    "srdrn.batch_size=8",
    "srdrn.epochs=1",
    "srdrn.batches_per_epoch=4",
]


def _days(n):
    return np.arange(n).astype("datetime64[D]").astype("datetime64[ns]")


def test_exact_quantiles_of_a_known_distribution_are_reliable_and_skilful():
    """Truth y = s·E with E unit exponential and a known scale s per cell-day."""
    rng = np.random.default_rng(0)
    n, h, w = 120, 6, 5
    scale = rng.uniform(1.0, 10.0, size=(n, h, w))
    truth = scale * rng.exponential(size=(n, h, w))
    taus = np.array(TAUS)
    q = scale[:, None] * -np.log1p(-taus)[None, :, None, None]  # exact conditional quantiles
    dims = ("time", "y", "x")
    quant = xr.DataArray(q, dims=("time", "quantile", "y", "x"),
                         coords={"time": _days(n), "quantile": taus})  # fmt: skip
    point, quantile_preds = split_heads(
        {"q": quant, "bcsd": xr.DataArray(scale, dims=dims, coords={"time": _days(n)})}
    )
    assert list(quantile_preds) == ["q"] and set(point) == {"q", "q q0.9", "q q0.99", "bcsd"}
    np.testing.assert_array_equal(point["q q0.99"].values, q[:, 2])
    events = {"P95": 15.0, "P99": 30.0}
    clim = {"P95": 0.1, "P99": 0.02}
    t = xr.DataArray(truth, dims=dims, coords={"time": _days(n)})
    mask = np.ones((h, w), bool)
    qaccs, paccs = accumulate_probabilistic(
        quantile_preds, {"bcsd": point["bcsd"]}, t, mask, events, clim, batch_days=17
    )
    res = score_probabilistic(qaccs, paccs, n_boot=200)
    qm = res["quantile_models"]["q"]
    for tau in TAUS:  # brute force: fraction of truth at or below the exact quantile
        k = TAUS.index(tau)
        below = float((truth <= q[:, k]).mean())
        leaf = qm["intervals"]["quantiles"][repr(tau)]["reliability"]
        assert qm["quantiles"][repr(tau)]["reliability"] == pytest.approx(below)
        sd = np.sqrt(tau * (1 - tau) / truth.size)  # binomial spread of a calibrated level
        assert abs(below - tau) < 4 * sd and leaf["low"] <= below <= leaf["high"]
        u = truth - q[:, k]
        pinball = float(np.maximum(tau * u, (tau - 1) * u).mean())
        assert qm["quantiles"][repr(tau)]["pinball"] == pytest.approx(pinball)
    for name, thr in events.items():
        p = exceedance_probability(q, taus, thr, axis=1)  # tested in tests/metrics
        obs = (truth > thr).astype(float)
        brier = float(((p - obs) ** 2).mean())
        e = qm["events"][name]
        assert e["brier"] == pytest.approx(brier, rel=1e-9)
        ref = float(((clim[name] - obs) ** 2).mean())
        assert e["bss"] == pytest.approx(1 - brier / ref, rel=1e-9)
        assert e["bss"] > 0
        # the deterministic forecast as 0/1: 1(scale > thr)
        b = paccs["bcsd"].compute()["events"][name]
        assert b["brier"] == pytest.approx(float((((scale > thr) - obs) ** 2).mean()))
        d = res["probability_differences"]["q − bcsd"]["events"][name]["brier"]
        assert d["estimate"] == pytest.approx(e["brier"] - b["brier"])
        assert d["estimate"] < 0 and d["low"] <= d["estimate"] <= d["high"]


def test_training_climatology_is_the_training_base_rate(quarter_jan_run):
    store = quarter_jan_run / "data" / "store.zarr"
    ds = open_store(store)
    split = labels(ds["split"].values)
    mask = ds["mask"].values.astype(bool)
    y = ds["target"].values[split == "train"][:, mask]
    thr = {"a": 1.0, "b": float(np.quantile(y, 0.97))}
    got = training_climatology(store, thr, mask, batch_days=5)
    for k, v in thr.items():
        assert got[k] == pytest.approx(float((y > np.float32(v)).mean()))


@pytest.fixture(scope="module")
def quantile_run(quarter_jan_run, tmp_path_factory):
    run = copy_run(quarter_jan_run, tmp_path_factory.mktemp("qrun") / "run")
    cfg = load_config("demo", [*TINY, f"srdrn.quantiles=[{','.join(map(str, TAUS))}]"])
    train_srdrn(cfg, run, kind="qsrdrn_real", echo=lambda *a: None, enable_progress_bar=False)
    det = load_config("demo", TINY)
    train_srdrn(det, run, kind="srdrn_real", echo=lambda *a: None, enable_progress_bar=False)
    return run


def test_verify_scores_every_head_and_the_probabilities(quantile_run):
    run = quantile_run
    res = verify_run(run, n_boot=50, echo=lambda m: None)
    assert {"srdrn_real", "qsrdrn_real", "qsrdrn_real q0.9", "qsrdrn_real q0.99"} <= set(
        res["models"]
    )
    store = run / "data" / "store.zarr"
    q = predict_srdrn(run / "checkpoints" / "qsrdrn_real" / "last.ckpt", store, split="test")
    ds = open_store(store)
    split = labels(ds["split"].values)
    mask = ds["mask"].values.astype(bool)
    truth = ds["target"].values[split == "test"][:, mask].astype(np.float64)
    heads = q.values[:, :, mask].astype(np.float64)
    # the median head is the model's point forecast; every head is scored as a field
    for name, k in (("qsrdrn_real", 0), ("qsrdrn_real q0.99", 2)):
        mae = float(np.abs(heads[:, k] - truth).mean())
        assert res["models"][name]["continuous"]["mae"] == pytest.approx(mae, rel=1e-5)
    prob = res["probabilistic"]
    clim = training_climatology(store, prob["events"], mask)
    assert prob["climatology"] == clim
    qm = prob["quantile_models"]["qsrdrn_real"]
    for k, tau in enumerate(TAUS):  # reliability by the tie rule clip(τ, below, at_or_below)
        below = float((truth < heads[:, k]).mean())
        at = float((truth <= heads[:, k]).mean())
        got = qm["quantiles"][repr(tau)]
        assert got["below"] == pytest.approx(below) and got["at_or_below"] == pytest.approx(at)
        assert got["reliability"] == pytest.approx(min(max(tau, below), at))
    # BCSD as a 0/1 forecast, against the training climatology
    bcsd = predict_baseline("bcsd", store, split="test").values[:, mask]
    for event, thr in prob["events"].items():
        obs = truth > np.float32(thr)
        brier = float((((bcsd > np.float32(thr)).astype(float) - obs) ** 2).mean())
        b = prob["probability_models"]["bcsd"]["events"][event]
        assert b["brier"] == pytest.approx(brier)
        ref = float(((clim[event] - obs) ** 2).mean())
        assert b["bss"] == pytest.approx(1 - brier / ref)
    assert {"qsrdrn_real − bcsd", "qsrdrn_real − srdrn_real"} <= set(
        prob["probability_differences"]
    )
    assert "qsrdrn_real − srdrn_real" in res["differences"]  # median head vs deterministic
    saved = json.loads((run / "metrics" / "verify.json").read_text())
    assert saved["probabilistic"]["climatology"] == clim
    for fig in ("verify_quantile_reliability", "verify_reliability_diagrams"):
        assert (run / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    html = write_report(run).read_text()
    assert "Quantile reliability and pinball score" in html and "qsrdrn_real q0.99" in html


def test_pieces_saved_and_merged_score_as_one_pass(quantile_run, tmp_path):
    run = quantile_run
    whole = verify_run(run, n_boot=40, figures=False, echo=lambda m: None)["probabilistic"]
    dirs = [tmp_path / "a", tmp_path / "b"]
    verify_run(run, period="2002-01-01:2002-01-15", save_state=dirs[0], echo=lambda m: None)
    verify_run(run, period="2002-01-16:2002-01-31", save_state=dirs[1], echo=lambda m: None)
    manifest = json.loads((dirs[0] / "manifest.json").read_text())
    assert set(manifest["probabilistic_models"]["quantile"]) == {"qsrdrn_real"}
    merged = merge_states(dirs[::-1], tmp_path / "verify.json", n_boot=40, echo=lambda m: None)
    got = merged["probabilistic"]
    assert got["climatology"] == whole["climatology"]
    for key in ("quantile_models", "probability_models", "probability_differences"):
        assert json.dumps(got[key], sort_keys=True) == json.dumps(whole[key], sort_keys=True)
