"""Figures, tables and headline of the generator's block, from a hand-made verify result."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from downpour.core.errors import DownpourError  # noqa: E402
from downpour.report import ensemble_figures as ef  # noqa: E402
from downpour.report.tables import (  # noqa: E402
    generator_difference_rows,
    generator_headline,
    generator_lines,
    generator_rows,
    significance_lines,
)

K = 4
FREQ = [0.3, 0.15, 0.1, 0.15, 0.3]  # a U shape: too little spread


def leaf(est, low, high, significant=False):
    return {"estimate": est, "low": low, "high": high, "dropped": 0, "significant": significant}


def result() -> dict:
    diagram = {"mean_probability": [0.0, 0.25, 0.5, 1.0], "observed_frequency": [0.01, 0.2, 0.4,
               0.9], "count": [500, 40, 0, 10]}  # fmt: skip
    scores = {
        "crps_ecdf": leaf(1.20, 1.10, 1.30), "crps_fair": leaf(1.05, 0.95, 1.15),
        "mae_ensemble_mean": leaf(1.4, 1.3, 1.5), "rmse_ensemble_mean": leaf(2.5, 2.3, 2.7),
        "spread": leaf(2.0, 1.9, 2.1), "spread_skill": leaf(0.80, 0.70, 0.90),
        "rank_max_ratio": leaf(1.5, 1.4, 1.6), "rank_min_ratio": leaf(0.5, 0.45, 0.55),
    }  # fmt: skip
    event = {"brier": leaf(0.02, 0.018, 0.022), "bss": leaf(0.3, 0.2, 0.4),
             "roc_auc": leaf(0.9, 0.88, 0.92)}  # fmt: skip
    pair = {
        "ecdf": {"difference": leaf(-0.30, -0.40, -0.20, True), "ensemble": leaf(1.2, 1.1, 1.3),
                 "reference": leaf(1.5, 1.4, 1.6)},
        "fair": {"difference": leaf(-0.45, -0.55, -0.35, True), "ensemble": leaf(1.05, 1, 1.1),
                 "reference": leaf(1.5, 1.4, 1.6)},
    }  # fmt: skip
    return {
        "units": "mm/day",
        "models": {},
        "differences": {},
        "generator": {
            "checkpoint": "run/checkpoints/cvae/best.ckpt",
            "members": K,
            "events": {"P95": 12.0},
            "climatology": {"P95": 0.05},
            "member_pooling": "every member pooled",
            "ensemble": {
                "n_days": 31,
                "members": K,
                "rank_histogram": {"frequencies": FREQ},
                "events": {"P95": {"reliability_diagram": diagram}},
                "intervals": {
                    "scores": scores,
                    "events": {"P95": event},
                    "reliability": {"P95": {"event_days": 4, "reliable": False}},
                },
            },
            "member_scores": {
                "intervals": {
                    "categorical": {
                        "P95": {
                            "csi": leaf(0.25, 0.2, 0.3),
                            "sedi": leaf(0.6, 0.55, 0.65),
                            "pod": leaf(0.4, 0.35, 0.45),
                        }
                    }
                }
            },  # fmt: skip
            "crps_minus_mae": {"srdrn_real": pair, "bcsd": {"error": "different cells"}},
        },
    }


def test_rank_histogram_bars_are_frequencies_over_uniform_with_the_band():
    fig = ef.plot_rank_histogram(result())
    ax = fig.axes[0]
    heights = [r.get_height() for r in ax.containers[0]]
    np.testing.assert_allclose(heights, np.array(FREQ) * (K + 1))
    band = [p for p in ax.patches if p not in ax.containers[0].patches]
    assert len(band) == 1
    y0, y1 = band[0].get_y(), band[0].get_y() + band[0].get_height()
    assert (y0, y1) == pytest.approx((0.8, 1.25))
    assert any(np.allclose(line.get_ydata(), 1.0) for line in ax.get_lines())  # uniform
    assert "1.50 [1.40, 1.60]" in ax.get_title() and "0.50 [0.45, 0.55]" in ax.get_title()
    plt.close(fig)


def test_spread_skill_point_and_ratio():
    fig = ef.plot_spread_skill(result())
    ax = fig.axes[0]
    point = ax.get_lines()[0]
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (2.5, 2.0)
    assert "0.80 [0.70, 0.90]" in ax.get_title()
    plt.close(fig)


def test_crps_against_mae_leaves_out_pairs_not_compared():
    fig = ef.plot_crps_vs_mae(result())
    ax1, ax2 = fig.axes
    bars = next(c for c in ax1.containers if isinstance(c, BarContainer))
    heights = [r.get_width() for r in bars]
    assert heights == [1.20, 1.05, 1.5]  # CRPS ECDF, CRPS fair, srdrn_real MAE (no bcsd)
    assert [t.get_text() for t in ax1.get_yticklabels()] == [
        "generator CRPS (ECDF)",
        "generator CRPS (fair)",
        "srdrn_real MAE",
    ]  # top to bottom
    assert ax2.get_lines()[0].get_xdata()[0] == -0.30
    plt.close(fig)


def test_reliability_draws_the_generator_bins_with_counts():
    fig = ef.plot_generator_reliability(result())
    ax = fig.axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == f"generator (K = {K})")
    np.testing.assert_allclose(line.get_xdata(), [0.0, 0.25, 1.0])  # the empty bin left out
    np.testing.assert_allclose(line.get_ydata(), [0.01, 0.2, 0.9])
    plt.close(fig)


def test_member_panel_shows_truth_and_members_of_each_day():
    rng = np.random.default_rng(0)
    heavy = xr.Dataset(
        {
            "samples": (("event", "member", "y", "x"), rng.gamma(1.0, 2.0, (3, 6, 8, 7))),
            "target": (("event", "y", "x"), rng.gamma(1.0, 2.0, (3, 8, 7))),
            "mask": (("y", "x"), np.ones((8, 7), bool)),
        },
        coords={
            "time": (
                "event",
                np.array(["2002-01-05", "2002-01-09", "2002-01-02"], dtype="datetime64[ns]"),
            )
        },  # fmt: skip
    )
    fig = ef.plot_member_panel(heavy, n_members=4)
    maps = [ax for ax in fig.axes if ax.get_title()]
    assert len(maps) == 3 * 5
    assert {ax.get_title() for ax in maps} >= {"real 2002-01-05", "member 4"}
    plt.close(fig)
    figs = ef.generator_figures(result(), heavy)
    assert set(figs) == set(ef.FIGURES)
    assert set(ef.generator_figures(result())) == set(ef.FIGURES) - {"verify_generator_members"}
    for f in figs.values():
        plt.close(f)


def test_tables_headline_and_statements():
    res = result()
    rows = dict(map(tuple, generator_rows(res)))
    assert rows["CRPS (ECDF: the K members as issued)"] == "1.200 [1.100, 1.300]"
    assert rows["spread–skill ratio (1: calibrated)"] == "0.800 [0.700, 0.900]"
    assert rows["BSS P95 (vs training climatology)"].endswith("interval unreliable)")
    assert rows["CSI P95, every member pooled"] == "0.250 [0.200, 0.300]"
    diff = generator_difference_rows(res)
    assert diff[0] == ["srdrn_real", "1.200 [1.100, 1.300]", "1.500 [1.400, 1.600]",
                       "-0.300 [-0.400, -0.200]", "-0.450 [-0.550, -0.350]", "yes"]  # fmt: skip
    assert diff[1][0] == "bcsd" and diff[1][-1] == "not compared: different cells"
    assert generator_headline(res) == {
        "CRPS generator": [1.20, 1.10, 1.30],
        "CRPS generator − MAE srdrn_real": [-0.30, -0.40, -0.20],
    }
    lines = generator_lines(res)
    assert lines == [
        "generator CRPS − srdrn_real MAE: -0.300 [-0.400, -0.200], significant",
        "generator CRPS − bcsd MAE: not compared (different cells)",
    ]
    assert significance_lines(res) == lines
    empty = {"models": {}, "differences": {}}
    assert generator_rows(empty) == [] and generator_headline(empty) == {}
    with pytest.raises(DownpourError, match="no 'generator' block"):
        ef.plot_rank_histogram(empty)


def test_heaviest_days_keep_the_three_heaviest_across_batches():
    mask = np.array([[True, True], [True, False]])
    means = np.array([1.0, 5.0, 2.0, 7.0, 0.5, 3.0])  # day means over the mask
    truth = np.broadcast_to(means[:, None, None], (6, 2, 2)).copy()
    truth[:, 1, 1] = 100.0  # outside the mask: ignored
    members = np.arange(6 * 6 * 4, dtype=float).reshape(6, 6, 2, 2)
    times = np.datetime64("2002-01-01", "ns") + np.arange(6) * np.timedelta64(1, "D")
    held = ef.HeaviestDays(n=3, shown=4)
    for sl in (slice(0, 4), slice(4, 6)):
        held.update(members[sl], truth[sl], times[sl], mask)
    ds = held.dataset(mask, {"lat": [40.0, 41.0], "lon": [10.0, 11.0]})
    np.testing.assert_array_equal(ds["time"].values, times[[3, 1, 5]])
    np.testing.assert_array_equal(ds["samples"].values, members[[3, 1, 5], :4])
    np.testing.assert_array_equal(ds["target"].values, truth[[3, 1, 5]])
    assert ds.sizes == {"event": 3, "member": 4, "y": 2, "x": 2}
    with pytest.raises(DownpourError, match="no day was offered"):
        ef.HeaviestDays().dataset(mask)
