"""Tables and figures of the distributional verification, from a hand-made result."""

import matplotlib

matplotlib.use("Agg")

from downpour.report import probabilistic as prob  # noqa: E402


def leaf(est, low, high, significant=False):
    return {"estimate": est, "low": low, "high": high, "significant": significant}


def result():
    q = {
        "quantiles": {
            "0.5": {"tau": 0.5, "below": 0.3, "at_or_below": 0.6, "reliability": 0.5},
            "0.99": {"tau": 0.99, "below": 0.985, "at_or_below": 0.985, "reliability": 0.985},
        },
        "events": {
            "P95": {
                "base_rate": 0.03,
                "reliability_diagram": {
                    "mean_probability": [0.01, 0.5], "observed_frequency": [0.02, 0.4],
                    "count": [100, 0],
                },
            }
        },
        "intervals": {
            "quantiles": {
                "0.5": {k: leaf(v, v, v) for k, v in
                        (("reliability", 0.5), ("exceedance", 0.4), ("pinball", 0.61))},
                "0.99": {k: leaf(v, v - 0.001, v + 0.001) for k, v in
                         (("reliability", 0.985), ("exceedance", 0.015), ("pinball", 0.07))},
            },
            "events": {"P95": {"brier": leaf(0.017, 0.015, 0.02), "bss": leaf(0.44, 0.4, 0.48),
                               "roc_auc": leaf(0.98, 0.97, 0.99)}},
            "reliability": {"P95": {"event_days": 6, "min_event_days": 10, "reliable": False}},
        },
    }  # fmt: skip
    det = {
        "events": {"P95": {"base_rate": 0.03, "reliability_diagram": {
            "mean_probability": [0.0, 1.0], "observed_frequency": [0.02, 0.5], "count": [90, 10]}}},
        "intervals": {"events": {"P95": {"brier": leaf(0.026, 0.02, 0.03),
                                         "bss": leaf(0.17, 0.12, 0.23),
                                         "roc_auc": leaf(0.8, 0.77, 0.82)}},
                      "reliability": {"P95": {"event_days": 40, "min_event_days": 10,
                                              "reliable": True}}},
    }  # fmt: skip
    return {
        "models": {"q": {}, "q q0.99": {}, "bcsd": {}},
        "probabilistic": {
            "events": {"P95": 13.9},
            "climatology": {"P95": 0.03},
            "quantile_models": {"q": q},
            "probability_models": {"bcsd": det},
            "probability_differences": {
                "q − bcsd": {"events": {"P95": {"bss": leaf(0.27, 0.25, 0.29, True),
                                                "roc_auc": leaf(0.18, 0.15, 0.2, True)}}}
            },
            "quantile_differences": {},
        },
    }  # fmt: skip


def test_rows_and_lines():
    r = result()
    assert prob.model_names(r) == ["q", "bcsd"] and prob.head_names(r) == ["q", "q q0.99"]
    rows = prob.quantile_rows(r)
    assert rows[1] == ["q", "0.99", "0.9850 [0.9840, 0.9860]", "0.9850 – 0.9850",
                       "0.0150 [0.0140, 0.0160]", "0.0100", "0.070 [0.069, 0.071]"]  # fmt: skip
    events = prob.event_rows(r)
    assert events[0][1] == "q (quantile heads)"
    assert events[0][3] == "0.440 [0.400, 0.480] (only 6 event days: intervals unreliable)"
    assert events[1][1:4] == ["bcsd (0/1)", "0.0260 [0.0200, 0.0300]", "0.170 [0.120, 0.230]"]
    assert prob.difference_lines(r) == [
        "q − bcsd, BSS P95: 0.270 [0.250, 0.290], significant",
        "q − bcsd, ROC_AUC P95: 0.180 [0.150, 0.200], significant",
    ]
    assert prob.interval({"estimate": float("nan")}) == "n/a"


def test_figures_draw_every_model(tmp_path):
    r = result()
    fig = prob.plot_quantile_reliability(r)
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends == [["q"], ["q"]]  # one model in each panel
    xs = fig.axes[1].containers[0].lines[0].get_xdata()
    assert list(xs) == [0.5, 0.010000000000000009]  # nominal exceedance 1 − τ on the x axis
    fig = prob.plot_reliability_diagrams(r)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels[:2] == ["q", "bcsd"] and "training climatology" in labels
    fig.savefig(tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
