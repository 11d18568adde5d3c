"""Tables and statements printed from results: verification headline, significance, quality."""

import numpy as np

from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.verification import paired_difference
from downpour.report.tables import quality_rows, significance_lines, verification_table


def perfect_and_shuffled() -> dict:
    """The result of ``verify_models`` for a perfect and a day-shuffled prediction of 40 days."""
    rng = np.random.default_rng(0)
    days, h, w = 40, 12, 10
    truth = rng.gamma(0.5, 8.0, size=(days, h, w)) * (rng.random((days, h, w)) < 0.6)
    times = np.arange(days).astype("datetime64[D]").astype("datetime64[ns]")
    preds = {"perfect": truth, "shuffled": truth[rng.permutation(days)]}
    accs = {}
    for name, pred in preds.items():
        accs[name] = VerificationAccumulator({"P95": 15.0, "5mm": 5.0}, mask=np.ones((h, w), bool))
        for i in range(0, days, 7):
            accs[name].update(pred[i : i + 7], truth[i : i + 7], time=times[i : i + 7])
    return {
        "models": {n: a.compute_with_intervals(200, 0) for n, a in accs.items()},
        "differences": {
            "perfect − shuffled": paired_difference(
                accs["perfect"], accs["shuffled"], n_boot=200, seed=0
            )
        },
    }


def test_significance_lines_and_headline_table():
    res = perfect_and_shuffled()
    lines = significance_lines(res)
    assert any(line.startswith("perfect − shuffled, CSI P95: +") and line.endswith(
        ", significant") for line in lines)  # fmt: skip
    names, rows = verification_table(res)
    assert names == ["perfect", "shuffled"]
    assert rows[0][0] == "CSI P95" and rows[0][1].startswith("1.000 [1.000, 1.000]")


def test_quality_rows_format_numbers_and_missing_values():
    stats = {"mean": 1.234, "P95": 10.0, "P99": 20.5, "max": 12345.6}
    summary = {
        "mode": "prior", "real": stats, "generated": {**stats, "mean": float("nan")},
        "diversity": 0.12345, "spatial_correlation": None, "wet_fraction_real": 0.5,
        "wet_fraction_generated": 0.25, "mass_bias": 3, "ks_tail": {"statistic": 0.1,
        "pvalue": 0.04}, "ks_wet": {"statistic": 0.2, "pvalue": 0.5},
    }  # fmt: skip
    rows = quality_rows(summary)
    assert rows[:3] == [
        ("diversity", "", "0.123"),
        ("spatial correlation (prior mode)", "", "n/a"),
        ("wet fraction", "0.500", "0.250"),
    ]
    assert rows[3] == ("mass bias", "", "3")
    assert rows[4] == ("KS tail (≥ P95)", "", "0.100 (p=0.040)")
    assert rows[6] == ("mean", "1.23", "n/a")
    assert rows[9] == ("max", "1.23e+04", "1.23e+04")
