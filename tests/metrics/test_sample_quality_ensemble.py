"""Sample quality: ensemble scores, RAPSD ratio and P99.9 against brute force and hand values."""

import json

import numpy as np
import pytest
import xarray as xr

from downpour.metrics.sample_quality import evaluate_samples
from downpour.metrics.spectra import rapsd_ratio, ratio_summary


def samples_dataset(gen: np.ndarray, real: np.ndarray, mask: np.ndarray) -> xr.Dataset:
    """A samples store: ``gen`` (E, K, y, x), ``real`` (E, y, x), NaN outside ``mask``."""
    return xr.Dataset(
        {
            "samples": (("event", "member", "y", "x"), np.where(mask, gen, np.nan)),
            "target": (("event", "y", "x"), np.where(mask, real, np.nan)),
            "mask": (("y", "x"), mask),
        },
        coords={"time": ("event", np.arange(len(real)).astype("datetime64[D]"))},
        attrs={"thresholds": json.dumps({"P95": 10.0})},
    )


def rain(rng: np.random.Generator, shape: tuple[int, ...], wet: float = 0.6) -> np.ndarray:
    """Gamma-distributed rain with a share ``1 − wet`` of exact zeros (ties)."""
    return (rng.gamma(0.7, 5.0, size=shape) * (rng.random(shape) < wet)).astype(np.float32)


def brute_crps(obs: float, members: np.ndarray, fair: bool) -> float:
    k = len(members)
    skill = sum(abs(float(x) - obs) for x in members) / k
    pairs = sum(abs(float(a) - float(b)) for a in members for b in members)
    return skill - pairs / (2 * k * (k - 1) if fair else 2 * k * k)


def test_crps_mae_and_spread_skill_match_brute_force_loops():
    rng = np.random.default_rng(10)
    e, k, h, w = 3, 3, 4, 5
    gen, real = rain(rng, (e, k, h, w)), rain(rng, (e, h, w))
    mask = np.ones((h, w), bool)
    mask[0, :2] = False
    ens = evaluate_samples(samples_dataset(gen, real, mask)).summary["ensemble"]
    crps_e, crps_f, abs_err, sq_err, var = [], [], [], [], []
    for ev in range(e):
        for i in range(h):
            for j in range(w):
                if not mask[i, j]:
                    continue
                m, y = gen[ev, :, i, j].astype(float), float(real[ev, i, j])
                crps_e.append(brute_crps(y, m, fair=False))
                crps_f.append(brute_crps(y, m, fair=True))
                mean = sum(m) / k
                abs_err.append(abs(mean - y))
                sq_err.append((mean - y) ** 2)
                var.append(sum((x - mean) ** 2 for x in m) / (k - 1))
    assert ens["n_valid"] == e * int(mask.sum()) == len(crps_e)
    assert ens["crps_ecdf"] == pytest.approx(np.mean(crps_e), rel=1e-12)
    assert ens["crps_fair"] == pytest.approx(np.mean(crps_f), rel=1e-12)
    assert ens["mae_ensemble_mean"] == pytest.approx(np.mean(abs_err), rel=1e-12)
    rmse = np.sqrt(np.mean(sq_err))
    assert ens["rmse_ensemble_mean"] == pytest.approx(rmse, rel=1e-12)
    spread = np.sqrt(np.mean(var) * (k + 1) / k)
    assert ens["spread_skill"] == pytest.approx(spread / rmse, rel=1e-12)
    hist = ens["rank_histogram"]
    assert len(hist["frequencies"]) == k + 1 and sum(hist["counts"]) == len(crps_e)
    assert sum(hist["frequencies"]) == pytest.approx(1.0)
    assert hist["max_ratio"] == pytest.approx(max(hist["frequencies"]) * (k + 1))
    assert ens["rank_max_ratio"] == hist["max_ratio"] and ens["rank_min_ratio"] == hist["min_ratio"]


def test_rank_histogram_of_a_dry_day_breaks_ties_uniformly():
    # truth and all members 0 everywhere: every rank 0..K equally likely
    e, k, h, w = 50, 4, 20, 20
    z = np.zeros((e, k, h, w), np.float32)
    ens = evaluate_samples(samples_dataset(z, z[:, 0], np.ones((h, w), bool))).summary["ensemble"]
    np.testing.assert_allclose(ens["rank_histogram"]["frequencies"], 1 / (k + 1), atol=0.01)
    assert ens["crps_ecdf"] == 0.0 and ens["mae_ensemble_mean"] == 0.0


def test_members_drawn_like_the_truth_are_calibrated():
    rng = np.random.default_rng(11)
    e, k, h, w = 40, 4, 16, 16
    ds = samples_dataset(rain(rng, (e, k, h, w)), rain(rng, (e, h, w)), np.ones((h, w), bool))
    ens = evaluate_samples(ds).summary["ensemble"]
    freq = np.array(ens["rank_histogram"]["frequencies"])
    # 10 240 ranks: a bin's frequency has a standard error of 0.004
    np.testing.assert_allclose(freq, 1 / (k + 1), atol=0.015)
    assert ens["rank_max_ratio"] < 1.08 and ens["rank_min_ratio"] > 0.92
    assert ens["spread_skill"] == pytest.approx(1.0, abs=0.05)
    # the fair CRPS removes the finite-ensemble penalty of the ECDF one
    assert ens["crps_fair"] < ens["crps_ecdf"]


def test_a_shifted_ensemble_scores_worse_and_piles_up_in_the_lowest_rank():
    rng = np.random.default_rng(12)
    e, k, h, w = 10, 5, 12, 12
    real = rain(rng, (e, h, w))
    spread = rng.normal(0.0, 1.0, size=(e, k, h, w)).astype(np.float32)
    mask = np.ones((h, w), bool)
    centred = evaluate_samples(samples_dataset(real[:, None] + spread, real, mask))
    shifted = evaluate_samples(samples_dataset(real[:, None] + spread + 6.0, real, mask))
    a, b = centred.summary["ensemble"], shifted.summary["ensemble"]
    assert b["crps_ecdf"] > a["crps_ecdf"] + 4.0
    assert b["crps_fair"] > a["crps_fair"] + 4.0
    assert b["mae_ensemble_mean"] == pytest.approx(6.0, abs=0.05)
    assert b["spread_skill"] < 0.5 * a["spread_skill"]
    # truth below (almost) every member: rank 0
    assert b["rank_histogram"]["frequencies"][0] > 0.99
    assert b["rank_max_ratio"] > 0.99 * (k + 1)


def test_ensemble_numbers_do_not_depend_on_the_chunking():
    rng = np.random.default_rng(13)
    ds = samples_dataset(rain(rng, (7, 3, 9, 8)), rain(rng, (7, 9, 8)), np.ones((9, 8), bool))
    one = evaluate_samples(ds, chunk_events=100).summary
    many = evaluate_samples(ds, chunk_events=2).summary
    assert one["ensemble"]["rank_histogram"] == many["ensemble"]["rank_histogram"]
    for key in ("crps_ecdf", "crps_fair", "spread_skill"):
        assert many["ensemble"][key] == pytest.approx(one["ensemble"][key], rel=1e-12)
    other_seed = evaluate_samples(ds, seed=5).summary["ensemble"]["rank_histogram"]
    assert other_seed["counts"] != one["ensemble"]["rank_histogram"]["counts"]  # ties redrawn
    assert json.loads(json.dumps(one, allow_nan=True))["ensemble"]["seed"] == 0


def test_p999_beside_p95_and_p99():
    rng = np.random.default_rng(14)
    gen, real = rain(rng, (6, 3, 20, 20)), rain(rng, (6, 20, 20))
    mask = np.ones((20, 20), bool)
    mask[:5] = False
    s = evaluate_samples(samples_dataset(gen, real, mask)).summary
    assert s["real"]["P99.9"] == pytest.approx(np.quantile(real[:, mask], 0.999), rel=1e-6)
    assert s["generated"]["P99.9"] == pytest.approx(np.quantile(gen[:, :, mask], 0.999), rel=1e-6)
    assert set(s["real"]) == {"max", "mean", "P95", "P99", "P99.9"}


def test_rapsd_ratio_of_identical_fields_is_one():
    rng = np.random.default_rng(15)
    real = rain(rng, (5, 24, 24))
    gen = np.repeat(real[:, None], 3, axis=1)
    mask = np.ones((24, 24), bool)
    mask[:4, :6] = False
    q = evaluate_samples(samples_dataset(gen, real, mask))
    r = q.summary["rapsd_ratio"]
    # ring r = 1 .. 11 of a 24 × 24 grid: wavelengths 24/r cells
    np.testing.assert_allclose(r["wavelength"], 24 / np.arange(1, 12))
    np.testing.assert_allclose(r["ratio"], 1.0, rtol=1e-12)
    assert r["bands"][">=64"] is None and r["bands"]["32-64"] is None  # longer than the grid
    for band in ("16-32", "8-16", "4-8", "3-4"):
        assert r["bands"][band] == pytest.approx(1.0, rel=1e-12)
    assert r["min"] == pytest.approx(1.0) and r["max"] == pytest.approx(1.0)
    assert r["share_within_factor"] == 1.0
    assert r["n_wavelengths"] == 8  # 24/1 … 24/8 = 3 cells
    np.testing.assert_allclose(
        np.asarray(r["ratio"]), q.spectra["generated"][1:] / q.spectra["real"][1:], rtol=1e-12
    )


def test_rapsd_ratio_drops_the_zero_frequency_and_flags_zero_power():
    freq = np.array([0.0, 1 / 8, 2 / 8, 3 / 8])
    real = np.array([100.0, 4.0, 0.0, 2.0])
    gen = np.array([1.0, 6.0, 1.0, 1.0])
    w, r = rapsd_ratio(freq, real, gen)
    np.testing.assert_allclose(w, [8.0, 4.0, 8 / 3])
    assert r[0] == 1.5 and np.isnan(r[1]) and r[2] == 0.5


def test_band_summary_by_hand():
    wavelength = np.array([128.0, 64.0, 40.0, 32.0, 20.0, 10.0, 8.0, 6.0, 4.0, 3.5, 3.0, 2.5])
    ratio = np.array([1.2, 0.8, 2.0, 1.0, 0.5, np.nan, 1.4, 1.6, 0.7, 0.9, 0.6, 9.0])
    s = ratio_summary(wavelength, ratio)
    assert s["bands"] == pytest.approx(
        {
            ">=64": (1.2 + 0.8) / 2,
            "32-64": (2.0 + 1.0) / 2,
            "16-32": 0.5,
            "8-16": 1.4,  # 10 cells has no ratio
            "4-8": (1.6 + 0.7) / 2,
            "3-4": (0.9 + 0.6) / 2,
        }
    )
    # wavelengths ≥ 3 with a ratio: 10 of them; 2.5 cells (ratio 9) is left out
    assert s["n_wavelengths"] == 10
    assert s["min"] == 0.5 and s["max"] == 2.0
    # within [1/1.5, 1.5]: 1.2, 0.8, 1.0, 1.4, 0.7, 0.9
    assert s["share_within_factor"] == pytest.approx(6 / 10)
    assert ratio_summary(wavelength, ratio, factor=2.0)["share_within_factor"] == 1.0
    empty = ratio_summary(np.array([2.5]), np.array([1.0]))
    assert empty["min"] is None and empty["share_within_factor"] is None
    assert all(v is None for v in empty["bands"].values())
