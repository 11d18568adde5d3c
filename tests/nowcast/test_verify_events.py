"""Verification across held-out events: per event, pooled, intervals over inits, the RAPSD band."""

import numpy as np
import pytest

from downpour.config import load_config
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.nowcast.synthetic import make_embedded_radar
from downpour.nowcast.train import train_nowcast
from downpour.nowcast.verify import verify_nowcast

pytest.importorskip("pysteps")
pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def events_run(tmp_path_factory):
    """A tiny advection nowcaster trained on event a, validated on b; c and d held out."""
    root = tmp_path_factory.mktemp("events")
    files = []
    for seed, name in enumerate("abcd"):
        ds = make_embedded_radar(seed=seed, hours=4, height=24, width=24, step_minutes=15)
        ds.to_netcdf(root / f"{name}.nc")
        files.append(root / f"{name}.nc")
    target = "[" + ",".join(f"{{path: {p}, variable: precip_rate}}" for p in files) + "]"
    cfg = load_config(
        "nowcast",
        [
            f"nowcast.target={target}",
            "nowcast.model=advection",
            "nowcast.holdout=event",
            "nowcast.val_events=[b]",
            "nowcast.test_events=[c, d]",
            "nowcast.step_minutes=15",
            "nowcast.n_frames=3",
            "nowcast.base_features=4",
            "nowcast.depth=2",
            "nowcast.rollout_steps=2",
            "nowcast.epochs=1",
            "nowcast.max_batches_per_epoch=2",
            "nowcast.hours=1",
            "nowcast.verify_every=2",
        ],
    )
    run = root / "run"
    train_nowcast(cfg, run, echo=lambda m: None, enable_progress_bar=False)
    return run / "checkpoints" / "nowcast" / "last.ckpt"


def test_held_out_events_are_scored_each_and_pooled(events_run, tmp_path):
    res = verify_nowcast(events_run, n_boot=200, out_dir=tmp_path, echo=lambda m: None)
    assert list(res["events"]) == ["c", "d"]
    assert set(res["methods"]) == {"model", "persistence", "extrapolation"}
    for k in range(len(res["leads"])):
        per = [res["events"][e]["methods"]["model"][k]["n_inits"] for e in ("c", "d")]
        assert res["methods"]["model"][k]["n_inits"] == sum(per)
    assert len(res["inits"]) == sum(len(res["events"][e]["inits"]) for e in ("c", "d"))
    # pooled CSI = CSI of the summed contingency counts of both events (a brute-force pool)
    lead = 0
    pooled = res["methods"]["persistence"][lead]["csi"]["1mm/h"]
    ev = [res["events"][e]["methods"]["persistence"][lead] for e in ("c", "d")]
    assert min(e["csi"]["1mm/h"] for e in ev) - 1e-12 <= pooled
    assert pooled <= max(e["csi"]["1mm/h"] for e in ev) + 1e-12


def test_intervals_bracket_the_estimate_and_paired_differences_match(events_run):
    res = verify_nowcast(events_run, n_boot=200, echo=lambda m: None)
    for m in ("model", "persistence", "extrapolation"):
        iv = res["intervals"][m][0]
        for score in (iv["csi"]["1mm/h"], iv["fss"]["1mm/h"][11], iv["mae"]):
            assert score["low"] - 1e-12 <= score["estimate"] <= score["high"] + 1e-12
        assert iv["mae"]["estimate"] == pytest.approx(res["methods"][m][0]["mae"])
    diff = res["paired"]["model-extrapolation"][0]
    expect = res["methods"]["model"][0]["mae"] - res["methods"]["extrapolation"][0]["mae"]
    assert diff["mae"]["estimate"] == pytest.approx(expect)
    assert diff["mae"]["low"] <= diff["mae"]["estimate"] <= diff["mae"]["high"]


def test_the_rapsd_band_uses_the_grid_spacing_in_km(events_run):
    res = verify_nowcast(events_run, n_boot=0, echo=lambda m: None)
    band = res["events"]["c"]["rapsd_band"]
    assert band["pixel_km"] == pytest.approx(2.0) and band["band_km"] == [8.0, 16.0]
    w = np.asarray(band["wavelengths_km"])
    assert w.size and w.min() >= 8.0 and w.max() <= 16.0
    # brute force from the mean spectra of the longest lead (both events share one grid)
    lead = band["lead_index"]
    freq = np.asarray(res["freq"])[1:]
    inside = (2.0 / freq >= 8.0) & (2.0 / freq <= 16.0)
    ev = res["events"]["c"]["methods"]
    for m in ("model", "persistence", "extrapolation"):
        power = np.asarray(ev[m][lead]["rapsd"])[1:][inside].sum()
        truth = np.asarray(ev[m][lead]["rapsd_truth"])[1:][inside].sum()
        assert band[m] == pytest.approx(power / truth)


def test_merged_lead_scores_equal_one_pass_over_both_events():
    from downpour.metrics.leadtime import LeadScores

    rng = np.random.default_rng(0)
    f = rng.gamma(0.5, 2.0, (4, 2, 8, 8))
    t = rng.gamma(0.5, 2.0, (4, 2, 8, 8))
    times = np.datetime64("2021-07-01T00:00") + np.arange(4) * np.timedelta64(5, "m")
    a, b, one = (LeadScores(2, [1.0], [1, 3], np.log1p) for _ in range(3))
    for i in range(4):
        (a if i < 2 else b).update(f[i], t[i], times[i])
        one.update(f[i], t[i], times[i])
    merged = a.merge(b).compute()
    for k, s in enumerate(one.compute()):
        assert merged[k]["csi"] == pytest.approx(s["csi"])
        assert merged[k]["fss"]["1mm/h"] == pytest.approx(s["fss"]["1mm/h"])
        assert merged[k]["rmse_norm"] == pytest.approx(s["rmse_norm"])
        assert merged[k]["rapsd"] == pytest.approx(s["rapsd"])
    assert isinstance(a.acc[0], VerificationAccumulator)


def test_the_cli_forecasts_one_named_event_and_verifies_all(events_run, tmp_path):
    from click.testing import CliRunner

    from downpour.cli.nowcast import nowcast

    runner = CliRunner()
    res = runner.invoke(
        nowcast, ["forecast", "--checkpoint", str(events_run), "--init", "2021-07-01T01:00"]
    )
    assert res.exit_code == 2 and "name one with --event (a, b, c, d)" in res.output
    out = tmp_path / "fc.nc"
    res = runner.invoke(
        nowcast,
        ["forecast", "--checkpoint", str(events_run), "--event", "c",
         "--init", "2021-07-01T01:00", "--hours", "1", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    import xarray as xr

    with xr.open_dataset(out) as ds:
        assert ds.sizes["lead_time"] == 4 and ds.attrs["method"] == "model"
    res = runner.invoke(
        nowcast,
        ["verify", "--checkpoint", str(events_run), "--n-boot", "50", "--out", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    assert "per event" in res.output and "model − extrapolation" in res.output
