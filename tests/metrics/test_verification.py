from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats

from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.contingency import categorical_scores, contingency_counts, fss_sums, sedi
from downpour.metrics.verification import paired_difference, verify_arrays, verify_dataset

THR = {"P95": 6.0, "10mm": 10.0}


def rain(rng: np.random.Generator, shape: tuple[int, ...], wet: float = 0.5) -> np.ndarray:
    """Continuous gamma rain with dry cells (no value equals a threshold)."""
    return np.where(rng.random(shape) < wet, rng.gamma(0.8, 6.0, shape), 0.0)


def pair(seed: int = 0, shape: tuple[int, int, int] = (6, 14, 11)):
    rng = np.random.default_rng(seed)
    truth = rain(rng, shape)
    pred = np.maximum(truth + rng.normal(0.0, 3.0, shape), 0.0)
    mask = rng.random(shape[1:]) > 0.2
    return pred, truth, mask


# ----------------------------------------------------------------- hand values


def test_contingency_hand_example():
    pred = np.array([[[10.0, 5.0, 12.0], [20.0, 3.0, 11.0]]])
    truth = np.array([[[0.0, 12.0, 15.0], [4.0, 3.0, 9.0]]])
    mask = np.array([[True, True, True], [True, False, True]])
    # threshold 10, event = value > 10 (strict: pred 10.0 is no event)
    # (0,0) 10/0 -> d   (0,1) 5/12 -> c   (0,2) 12/15 -> a
    # (1,0) 20/4 -> b   (1,1) masked      (1,2) 11/9  -> b
    counts = contingency_counts(pred, truth, 10.0, mask)
    assert counts.tolist() == [[1, 2, 1, 1]]
    s = categorical_scores(*counts[0])
    assert s["csi"] == pytest.approx(1 / 4)  # a / (a+b+c)
    assert s["pod"] == pytest.approx(1 / 2)  # a / (a+c)
    assert s["far"] == pytest.approx(2 / 3)  # ratio b / (a+b)
    assert s["pofd"] == pytest.approx(2 / 3)  # rate b / (b+d)
    assert s["frequency_bias"] == pytest.approx(3 / 2)
    # SEDI(H=1/2, F=2/3): num = ln(2/3) - ln(1/2) - ln(1/3) + ln(1/2) = ln 2,
    # den = ln(2/3) + 2 ln(1/2) + ln(1/3) = -2.890372
    assert s["sedi"] == pytest.approx(math.log(2) / -2.8903717578961645)
    assert s["sedi"] == pytest.approx(-0.2398124, abs=1e-6)


def test_sedi_by_hand_and_clipping():
    # H = 0.8, F = 0.1: (-2.302585 + 0.223144 + 0.105361 - 1.609438)
    #                 / (-2.302585 - 0.223144 - 0.105361 - 1.609438)
    #                 = -3.583519 / -4.240527 = 0.845065
    assert float(sedi(0.8, 0.1)) == pytest.approx(0.845065, abs=1e-6)
    h, f = 1 - 1e-6, 1e-6  # H = 1 and F = 0 are clipped to these
    lf, lh, l1f, l1h = math.log(f), math.log(h), math.log(1 - f), math.log(1 - h)
    expected = (lf - lh - l1f + l1h) / (lf + lh + l1f + l1h)
    assert float(sedi(1.0, 0.0)) == pytest.approx(expected)
    assert float(sedi(1.0, 0.0)) == pytest.approx(1.0, abs=1e-6)  # 0.99999986, finite


def test_undefined_ratios_are_nan_not_errors():
    with np.errstate(all="raise"):
        s = categorical_scores(0, 0, 0, 5)
    assert np.isnan(s["csi"]) and np.isnan(s["pod"]) and np.isnan(s["far"])
    assert np.isnan(s["sedi"])
    assert s["pofd"] == 0.0


# -------------------------------------------------------- brute-force reference


def assert_matches_brute_force(pred, truth, mask, res, tail):
    n = sa = ss = 0.0
    nt = st = 0.0
    vals_p, vals_t = [], []
    counts = {k: [0, 0, 0, 0] for k in THR}
    for day in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            for j in range(pred.shape[2]):
                p, t = pred[day, i, j], truth[day, i, j]
                if not (mask[i, j] and np.isfinite(p) and np.isfinite(t)):
                    continue
                n += 1
                sa += abs(p - t)
                ss += (p - t) ** 2
                if t > tail:
                    nt += 1
                    st += abs(p - t)
                vals_p.append(p)
                vals_t.append(t)
                for k, thr in THR.items():
                    slot = {(True, True): 0, (True, False): 1, (False, True): 2, (False, False): 3}
                    counts[k][slot[(p > thr, t > thr)]] += 1
    for k in THR:
        got = res["categorical"][k]
        assert [got["a"], got["b"], got["c"], got["d"]] == counts[k]
    c = res["continuous"]
    assert c["n_valid"] == n
    assert c["mae"] == pytest.approx(sa / n, rel=1e-12)
    assert c["rmse"] == pytest.approx(math.sqrt(ss / n), rel=1e-12)
    assert c["mae_tail"] == pytest.approx(st / nt, rel=1e-12)
    r = stats.pearsonr(vals_p, vals_t).statistic
    assert c["correlation"] == pytest.approx(r, abs=1e-12)


def test_scores_match_brute_force_with_mask_and_nan():
    pred, truth, mask = pair(1)
    truth[2, 3, 4] = np.nan
    pred[0, 5, 5] = np.nan
    res = verify_arrays(pred, truth, mask, THR, scales=(1, 3), batch_days=4, tail_fit=False)
    assert_matches_brute_force(pred, truth, mask, res, tail=THR["P95"])
    assert res["n_days"] == 6 and res["continuous"]["tail_threshold"] == THR["P95"]


def brute_fss(pred, truth, mask, thr, s):
    """FSS by explicit windows (odd s), zero padding, masked cells 0 and excluded."""
    num = den = 0.0
    days, ny, nx = pred.shape
    h = s // 2
    for day in range(days):
        valid = mask & np.isfinite(pred[day]) & np.isfinite(truth[day])
        ip = (np.nan_to_num(pred[day]) > thr) & valid
        io = (np.nan_to_num(truth[day]) > thr) & valid
        for i in range(ny):
            for j in range(nx):
                if not valid[i, j]:
                    continue
                win = (slice(max(i - h, 0), i + h + 1), slice(max(j - h, 0), j + h + 1))
                pf, po = ip[win].sum() / s**2, io[win].sum() / s**2
                num += (pf - po) ** 2
                den += pf**2 + po**2
    return 1 - num / den


def test_fss_matches_brute_force():
    pred, truth, mask = pair(2, (3, 12, 9))
    truth[1, 2, 2] = np.nan
    res = verify_arrays(pred, truth, mask, THR, scales=(1, 3, 5), tail_fit=False)
    for name, thr in THR.items():
        for s in (1, 3, 5):
            expected = brute_fss(pred, truth, mask, thr, s)
            assert res["fss"][name][s] == pytest.approx(expected, abs=1e-12)


def test_p99_bias_matches_numpy_quantile():
    pred, truth, mask = pair(3, (20, 30, 30))
    res = verify_arrays(pred, truth, mask, THR, scales=(1,), tail_fit=False)
    valid = np.broadcast_to(mask, pred.shape)
    qp, qt = np.quantile(pred[valid], 0.99), np.quantile(truth[valid], 0.99)
    c = res["continuous"]
    assert c["p99_pred"] == pytest.approx(qp, rel=2e-3)
    assert c["p99_truth"] == pytest.approx(qt, rel=2e-3)
    assert c["p99_bias"] == pytest.approx(qp - qt, abs=2e-3 * (qp + qt))


# --------------------------------------------------------------- cross-checks


def test_categorical_matches_pysteps():
    pysteps_scores = pytest.importorskip("pysteps.verification.detcatscores")
    pred, truth, _ = pair(5, (4, 20, 20))
    res = verify_arrays(pred, truth, None, THR, scales=(1,), tail_fit=False)
    for name, thr in THR.items():
        # pysteps' categorical scores use '>' as we do; no NaN in the data
        ref = pysteps_scores.det_cat_fct(pred, truth, thr, ["CSI", "POD", "FAR", "FA", "SEDI"])
        got = res["categorical"][name]
        assert got["csi"] == pytest.approx(ref["CSI"], rel=1e-12)
        assert got["pod"] == pytest.approx(ref["POD"], rel=1e-12)
        assert got["far"] == pytest.approx(ref["FAR"], rel=1e-12)
        assert got["pofd"] == pytest.approx(ref["FA"], rel=1e-12)
        assert got["sedi"] == pytest.approx(ref["SEDI"], rel=1e-12)


def test_fss_matches_pysteps_odd_and_even_scales():
    spatial = pytest.importorskip("pysteps.verification.spatialscores")
    pred, truth, _ = pair(6, (3, 24, 20))
    scales = (1, 2, 3, 4, 9)
    res = verify_arrays(pred, truth, np.ones((24, 20), bool), THR, scales=scales, tail_fit=False)
    for name, thr in THR.items():
        for s in scales:
            obj = spatial.fss_init(thr, s)
            for day in range(pred.shape[0]):  # pysteps uses '>=': no value equals thr here
                spatial.fss_accum(obj, pred[day], truth[day])
            assert res["fss"][name][s] == pytest.approx(spatial.fss_compute(obj), abs=1e-12)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fss_matches_scores_fss_2d_up_to_its_extra_edge_windows():
    # scores' zero-padded fss_2d (2.7) also slides windows centred one row below and one
    # column right of the domain: it equals our FSS of fields padded by one zero row and
    # column at the bottom/right (pysteps has no such extra windows; see the pysteps test)
    scores_spatial = pytest.importorskip("scores.spatial")
    pred, truth, _ = pair(7, (3, 24, 20))
    pad = ((0, 0), (0, 1), (0, 1))
    res = verify_arrays(np.pad(pred, pad), np.pad(truth, pad), None, THR, scales=(3, 5),
                        tail_fit=False)  # fmt: skip
    dims = ("time", "y", "x")
    fp, ob = xr.DataArray(pred, dims=dims), xr.DataArray(truth, dims=dims)
    for name, thr in THR.items():
        for s in (3, 5):
            ref = scores_spatial.fss_2d(
                fp,
                ob,
                event_threshold=thr,
                window_size=(s, s),
                spatial_dims=("y", "x"),
                zero_padding=True,
                threshold_operator=np.greater,
                reduce_dims=["time"],
            )
            assert res["fss"][name][s] == pytest.approx(float(ref), abs=1e-12)


def test_continuous_and_categorical_match_scores_with_nan_as_mask():
    continuous = pytest.importorskip("scores.continuous")
    categorical = pytest.importorskip("scores.categorical")
    pred, truth, mask = pair(8)
    res = verify_arrays(pred, truth, mask, THR, scales=(1,), tail_fit=False)
    dims = ("time", "y", "x")
    fp = xr.DataArray(np.where(mask, pred, np.nan), dims=dims)
    ob = xr.DataArray(np.where(mask, truth, np.nan), dims=dims)
    assert res["continuous"]["mae"] == pytest.approx(float(continuous.mae(fp, ob)), rel=1e-12)
    assert res["continuous"]["rmse"] == pytest.approx(float(continuous.rmse(fp, ob)), rel=1e-12)
    thr = THR["10mm"]
    events = [(x > thr).where(~np.isnan(x)) for x in (fp, ob)]
    table = categorical.BinaryContingencyManager(*events).transform()
    got = res["categorical"]["10mm"]
    assert got["csi"] == pytest.approx(float(table.critical_success_index()), rel=1e-12)
    assert got["far"] == pytest.approx(float(table.false_alarm_ratio()), rel=1e-12)
    assert got["pofd"] == pytest.approx(float(table.false_alarm_rate()), rel=1e-12)
    sedi_ref = float(table.symmetric_extremal_dependence_index())
    assert got["sedi"] == pytest.approx(sedi_ref, rel=1e-12)


# ---------------------------------------------------------------- streaming


def test_two_merged_halves_equal_one_pass():
    pred, truth, mask = pair(9, (10, 16, 13))
    one = VerificationAccumulator(THR, scales=(1, 3, 4), mask=mask)
    one.update(pred, truth)
    a = VerificationAccumulator(THR, scales=(1, 3, 4), mask=mask)
    b = VerificationAccumulator(THR, scales=(1, 3, 4), mask=mask)
    a.update(pred[:3], truth[:3])
    a.update(pred[3:4], truth[3:4])
    b.update(pred[4:], truth[4:])
    merged = a.merge(b)
    r1, r2 = one.compute(tail_fit=False), merged.compute(tail_fit=False)
    for name in THR:
        for k in "abcd":
            assert r1["categorical"][name][k] == r2["categorical"][name][k]
        for k, v in r1["categorical"][name].items():
            assert r2["categorical"][name][k] == pytest.approx(v, rel=1e-12, nan_ok=True)
        for s, v in r1["fss"][name].items():
            assert r2["fss"][name][s] == pytest.approx(v, rel=1e-12)
    for k, v in r1["continuous"].items():
        assert r2["continuous"][k] == pytest.approx(v, rel=1e-12)
    assert np.array_equal(one.hist_pred.counts, merged.hist_pred.counts)
    assert merged.n_days == 10


def test_torch_input_equals_numpy():
    pred, truth, mask = pair(10)
    ref = verify_arrays(pred, truth, mask, THR, scales=(1, 3), tail_fit=False)
    got = verify_arrays(
        torch.from_numpy(pred).float(), torch.from_numpy(truth).float(), mask, THR,
        scales=(1, 3), tail_fit=False,
    )  # fmt: skip
    assert got["categorical"]["10mm"]["a"] == ref["categorical"]["10mm"]["a"]
    assert got["continuous"]["mae"] == pytest.approx(ref["continuous"]["mae"], rel=1e-6)


def test_intervals_bracket_estimates_and_are_seeded():
    pred, truth, mask = pair(11, (30, 10, 10))
    acc = VerificationAccumulator(THR, scales=(1, 3), mask=mask)
    acc.update(pred, truth)
    r1 = acc.compute_with_intervals(n_boot=200, seed=3, tail_fit=False)
    r2 = acc.compute_with_intervals(n_boot=200, seed=3, tail_fit=False)
    assert r1["intervals"] == r2["intervals"]
    iv = r1["intervals"]
    for k in ("correlation", "mae", "rmse", "mae_tail"):
        leaf = iv["continuous"][k]
        assert leaf["estimate"] == pytest.approx(r1["continuous"][k])
        assert leaf["low"] <= leaf["estimate"] <= leaf["high"]
        assert leaf["low"] < leaf["high"]
    csi = iv["categorical"]["P95"]["csi"]
    assert csi["low"] <= r1["categorical"]["P95"]["csi"] <= csi["high"]
    assert iv["fss"]["10mm"][3]["low"] <= iv["fss"]["10mm"][3]["high"]


def test_identical_days_collapse_the_interval():
    pred, truth, mask = pair(12, (1, 12, 12))
    acc = VerificationAccumulator(THR, scales=(1,), mask=mask)
    acc.update(np.repeat(pred, 8, 0), np.repeat(truth, 8, 0))
    leaf = acc.compute_with_intervals(n_boot=50, tail_fit=False)["intervals"]["continuous"]["mae"]
    assert leaf["low"] == pytest.approx(leaf["estimate"], rel=1e-12)
    assert leaf["high"] == pytest.approx(leaf["estimate"], rel=1e-12)


def test_identical_predictions_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    days, h, w = 20, 12, 10
    truth = rng.gamma(0.5, 8.0, size=(days, h, w)) * (rng.random((days, h, w)) < 0.6)
    pred = truth * 0.8
    a = VerificationAccumulator({"P95": 10.0})
    b = VerificationAccumulator({"P95": 10.0})
    a.update(pred, truth)
    b.update(pred, truth)
    d = paired_difference(a, b, n_boot=100)
    leaf = d["categorical"]["P95"]["sedi"]
    assert (leaf["estimate"], leaf["low"], leaf["high"]) == (0.0, 0.0, 0.0)
    assert not leaf["significant"]
    c = VerificationAccumulator({"P95": 10.0})
    c.update(pred[:10], truth[:10])
    with pytest.raises(DownpourError, match="same days"):
        paired_difference(a, c)


def test_verify_dataset_streams_dask_and_checks_time():
    pytest.importorskip("dask")
    pred, truth, mask = pair(13, (9, 12, 10))
    time = np.arange("2020-01-01", "2020-01-10", dtype="datetime64[D]").astype("datetime64[ns]")
    coords = {"time": time, "y": np.arange(12.0), "x": np.arange(10.0)}
    dims = ("time", "y", "x")
    p = xr.DataArray(pred, dims=dims, coords=coords, name="srdrn").chunk({"time": 2})
    t = xr.DataArray(truth, dims=dims, coords=coords, name="pr")
    m = xr.DataArray(mask, dims=("y", "x"))
    res = verify_dataset(p, t, m, THR, batch_days=4, scales=(1, 3), n_boot=20)
    ref = verify_arrays(pred, truth, mask, THR, scales=(1, 3), n_boot=20)
    assert res["continuous"]["mae"] == pytest.approx(ref["continuous"]["mae"], rel=1e-12)
    assert res["intervals"]["continuous"]["mae"] == pytest.approx(
        ref["intervals"]["continuous"]["mae"], rel=1e-12
    )
    assert res["period"] == [str(time[0]), str(time[-1])]
    shifted = p.assign_coords(time=time + np.timedelta64(1, "D"))
    with pytest.raises(DownpourError, match="'srdrn' and truth 'pr' differ"):
        verify_dataset(shifted, t, m, THR, n_boot=0)
    with pytest.raises(DownpourError, match="9 vs 8 time steps"):
        verify_dataset(p, t.isel(time=slice(0, 8)), m, THR, n_boot=0)


# ---------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error():
    pred, truth, mask = pair(14)
    with pytest.raises(DownpourError, match="shape"):
        verify_arrays(pred[:, :-1], truth, None, THR)
    with pytest.raises(DownpourError, match="no valid"):
        verify_arrays(pred, truth, np.zeros_like(mask), THR)
    with pytest.raises(DownpourError, match="no valid cell in 6 days"):
        verify_arrays(pred, np.full_like(truth, np.nan), mask, THR)
    with pytest.raises(DownpourError, match="mask shape"):
        verify_arrays(pred, truth, mask[:-1], THR)
    with pytest.raises(DownpourError, match="thresholds"):
        VerificationAccumulator({})
    with pytest.raises(DownpourError, match="cannot merge"):
        VerificationAccumulator(THR).merge(VerificationAccumulator({"P95": 5.0}))
    with pytest.raises(DownpourError, match="nothing to verify"):
        VerificationAccumulator(THR).compute()
    fss = fss_sums(pred, truth, 10.0, (1, 3), mask)
    assert fss.shape == (6, 2, 3) and np.all(fss >= 0)


def test_verify_dataset_rejects_other_grids_dims_and_masks():
    pred, truth, mask = pair(15, (4, 8, 6))
    time = np.arange("2021-06-01", "2021-06-05", dtype="datetime64[D]")
    t = xr.DataArray(truth, dims=("time", "y", "x"), coords={"time": time}, name="pr")
    p = xr.DataArray(pred, dims=("time", "y", "x"), coords={"time": time}, name="cvae")
    # another dim order is fine: pred is transposed to truth's order
    res = verify_dataset(p.transpose("x", "time", "y"), t, mask, THR, n_boot=0, tail_fit=False)
    ref = verify_arrays(pred, truth, mask, THR, tail_fit=False)
    assert res["continuous"]["rmse"] == pytest.approx(ref["continuous"]["rmse"], rel=1e-12)
    with pytest.raises(DownpourError, match="'cvae' grid"):
        verify_dataset(p.isel(x=slice(0, 5)), t, None, THR, n_boot=0)
    with pytest.raises(DownpourError, match="dims"):
        verify_dataset(p.rename(x="lon"), t, None, THR, n_boot=0)
    with pytest.raises(DownpourError, match="mask dims"):
        verify_dataset(p, t, xr.DataArray(mask, dims=("lat", "lon")), THR, n_boot=0)
    shifted_grid = p.assign_coords(y=np.arange(8.0) + 0.5)
    with pytest.raises(DownpourError, match="different 'y' coordinates"):
        verify_dataset(shifted_grid, t.assign_coords(y=np.arange(8.0)), None, THR, n_boot=0)
