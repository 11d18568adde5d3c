"""The verification benchmark: its figures, and agreement with pysteps and ``scores``."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from downpour.bench import verification as bench


def test_synthetic_fields_are_deterministic_with_the_stated_fractions():
    pred, truth, mask, thr = bench.synthetic_fields(40, seed=3)
    again = bench.synthetic_fields(40, seed=3)
    assert np.array_equal(pred, again[0]) and np.array_equal(truth, again[1])
    assert pred.dtype == truth.dtype == np.float32 and pred.shape == (40, 156, 132)
    assert 0.5 < mask.mean() < 0.7
    assert 0.35 < (truth > 0).mean() < 0.45
    wet = truth[:, mask][truth[:, mask] > 0.1]
    assert thr["P95"] == pytest.approx(np.quantile(wet, 0.95))
    assert (thr["10mm"], thr["20mm"]) == (10.0, 20.0)


@pytest.fixture(scope="module")
def bench_out():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return bench.bench_verification(days=6, subset_days=3, memcpy_mb=4)


def test_benchmark_figures(bench_out):
    out = bench_out
    assert out["name"] == "verification" and out["shape"] == [6, 156, 132]
    assert out["input_gb"] == pytest.approx(2 * 6 * 156 * 132 * 4 / 1e9)
    ours = out["ours"]
    assert ours["gbps"] == pytest.approx(out["input_gb"] / ours["seconds"])
    assert ours["fraction_of_memcpy"] == pytest.approx(ours["gbps"] / out["memcpy_gbps"])
    assert ours["peak_mb"] > 0


@pytest.mark.parametrize("package", ["pysteps", "scores"])
def test_benchmark_agrees_with(bench_out, package):
    res = bench_out[package]
    if importlib.util.find_spec(package) is None:
        assert res == {"available": False, "reason": f"{package} is not installed"}
        pytest.skip(f"{package} is not installed: nothing to compare with")
    ours = bench_out["ours"]
    assert res["timed_days"] == 3 and res["extrapolated"]
    assert res["seconds"] == pytest.approx(res["measured_seconds"] * 2)
    assert res["speedup"] == pytest.approx(res["seconds"] / ours["seconds"])
    diff = res["max_abs_diff"]
    assert set(diff) == {"csi", "pod", "far", "frequency_bias", "mae", "rmse",
                         "correlation", "fss"}  # fmt: skip
    for k in ("csi", "pod", "far", "frequency_bias", "fss"):
        assert diff[k] < 1e-12, (package, k, diff[k])
    for k in ("mae", "rmse", "correlation"):  # they accumulate float32 in float32
        assert diff[k] < 1e-5, (package, k, diff[k])


def test_benchmark_skips_a_missing_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "scores" else real(name, *a)
    )
    out = bench.bench_verification(days=2, subset_days=2, memcpy_mb=4)
    assert out["scores"] == {"available": False, "reason": "scores is not installed"}
    assert out["ours"]["seconds"] > 0
