"""Training-curve figure: a hand-made Lightning CSV log gives the expected panels and lines."""

import csv
import json

import matplotlib.pyplot as plt
import pytest

from downpour.report.html import read_training_log, training_curves
from downpour.report.training_figures import classify_columns, log_units, plot_training_curves

#: Loss terms (train/<name>) and their size; ``focal`` is 0 throughout.
TERMS = {"kl": 40.0, "recon": 5.0, "crps": 3.0, "t_a": 1.0, "t_b": 0.8, "mass": 0.5,
         "t_c": 0.2, "sparse": 0.1, "t_d": 0.05, "focal": 0.0}  # fmt: skip
#: Validation-only metrics.
VAL_METRICS = {"MAE": 1.5, "MAE_tail": 12.0, "MAE_prior": 1.8, "CRPS": 1.1, "MAE_mean": 1.4,
               "CSI_P95": 0.2}  # fmt: skip


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def lightning_rows(epochs: int = 3) -> list[dict[str, float]]:
    """Rows as Lightning's CSVLogger writes them: two step rows and one validation row per epoch."""
    rows = []
    step = 0
    for e in range(epochs):
        decay = 1.0 - 0.1 * e
        for _ in range(2):
            row = {
                "epoch": e,
                "step": step,
                "train/loss": 60.0 * decay,
                "train/beta": 0.001 * (e + 1),
            }
            row |= {f"train/{k}": v * decay for k, v in TERMS.items()}
            row["train/crps_pool4_step"] = 2.0 * decay  # logged with on_epoch=True
            rows.append(row)
            step += 1
        rows.append({"epoch": e, "step": step - 1, "train/crps_pool4_epoch": 2.0 * decay})
        val = {"epoch": e, "step": step - 1, "val/loss": 70.0 * decay, "lr-Adam": 1e-3}
        val |= {f"val/{k}": 1.2 * TERMS[k] * decay for k in ("kl", "recon", "crps", "focal")}
        val |= {f"val/{k}": v * decay for k, v in VAL_METRICS.items()}
        rows.append(val)
    return rows


def write_log(run, kind: str, rows: list[dict[str, float]]) -> None:
    path = run / "logs" / kind / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    columns = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def panels_of(fig) -> dict[str, object]:
    return {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_visible()}


def line_labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_cvae_log_is_split_into_readable_panels(tmp_path):
    write_log(tmp_path, "cvae", lightning_rows())
    fig = training_curves(tmp_path, "cvae")
    panels = panels_of(fig)
    assert list(panels) == [
        "cvae: total loss",
        "cvae: validation metrics",
        "cvae: validation scores",
        "cvae: loss terms (1/2)",
        "cvae: loss terms (2/2)",
        "cvae: schedules and other values",
    ]
    total = panels["cvae: total loss"]
    assert line_labels(total) == ["train/loss", "val/loss"]
    assert total.get_ylabel() == "loss (unitless)"
    metrics = panels["cvae: validation metrics"]
    assert line_labels(metrics) == ["val/CRPS", "val/MAE", "val/MAE_mean", "val/MAE_prior",
                                    "val/MAE_tail"]  # fmt: skip
    assert metrics.get_ylabel() == "validation metric (mm/day)"
    assert line_labels(panels["cvae: validation scores"]) == ["val/CSI_P95"]
    # only the metrics panel is in mm/day
    assert [ax for ax in panels.values() if "mm/day" in ax.get_ylabel()] == [metrics]
    # ten non-zero terms, largest first, five per panel; train solid and its val twin dashed
    first, second = panels["cvae: loss terms (1/2)"], panels["cvae: loss terms (2/2)"]
    assert line_labels(first) == ["train/kl", "val/kl", "train/recon", "val/recon", "train/crps",
                                  "val/crps", "train/crps_pool4", "train/t_a"]  # fmt: skip
    assert line_labels(second) == ["train/t_b", "train/mass", "train/t_c", "train/sparse",
                                   "train/t_d"]  # fmt: skip
    kl_train, kl_val = first.get_lines()[:2]
    assert kl_train.get_color() == kl_val.get_color()
    assert (kl_train.get_linestyle(), kl_val.get_linestyle()) == ("-", "--")
    legend = [t.get_text() for t in first.get_legend().get_texts()]
    assert legend == ["kl", "recon", "crps", "crps_pool4", "t_a", "train", "validation"]
    assert first.get_legend().get_bbox_to_anchor().x0 > first.get_window_extent().x1  # outside
    assert "focal" in first.get_title() and "not drawn" in first.get_title()
    assert all(ax.get_yscale() == "log" for ax in (first, second))
    assert first.get_ylabel() == "loss term (unitless)"
    assert line_labels(panels["cvae: schedules and other values"]) == ["train/beta", "lr-Adam"]
    # epoch means of the step rows
    e, v = first.get_lines()[0].get_data()
    assert list(e) == [0, 1, 2] and list(v) == pytest.approx([40.0, 36.0, 32.0])


def test_columns_are_classified_by_name_alone():
    p = classify_columns(
        ["train/loss", "val/loss", "train/crps", "val/crps", "val/CRPS", "val/MAE_mean",
         "val/RMSE", "val/bias_P99", "val/cover_0.9", "val/CSI_P95", "train/beta", "lr-AdamW",
         "test/MAE"]
    )  # fmt: skip
    assert p.total == ["train/loss", "val/loss"]
    assert p.terms == ["crps"]
    assert p.metrics == ["val/CRPS", "val/MAE_mean", "val/RMSE", "val/bias_P99"]
    assert p.scores == ["val/cover_0.9", "val/CSI_P95"]
    assert p.other == ["train/beta", "lr-AdamW", "test/MAE"]


def test_srdrn_log_without_terms_and_short_ranges():
    log = {
        "train/loss": [(0.0, 0.21), (1.0, 0.2)],
        "val/loss": [(0.0, 0.3), (1.0, 0.29)],
        "val/MAE": [(0.0, 1.3367), (1.0, 1.3362)],
        "val/CSI_P95": [(0.0, 0.188), (1.0, 0.187)],
    }
    fig = plot_training_curves(log, kind="srdrn", units="mm/h")
    panels = panels_of(fig)
    assert list(panels) == ["srdrn: total loss", "srdrn: validation metrics",
                            "srdrn: validation scores"]  # fmt: skip
    assert panels["srdrn: validation metrics"].get_ylabel() == "validation metric (mm/h)"
    # a range narrower than a factor 5 stays linear
    assert all(ax.get_yscale() == "linear" for ax in panels.values())
    assert plot_training_curves({}, kind="srdrn") is None


def test_no_log_gives_no_figure_and_units_come_from_the_card(tmp_path):
    assert training_curves(tmp_path, "cvae") is None
    assert log_units(tmp_path, "cvae") == "mm/day"
    assert log_units(tmp_path, "nowcast") == "mm/h"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "card.json").write_text(json.dumps({"units": "kg m-2 d-1"}))
    assert log_units(tmp_path, "cvae") == "kg m-2 d-1"
    write_log(tmp_path, "cvae", lightning_rows(2))
    fig = training_curves(tmp_path, "cvae")
    assert panels_of(fig)["cvae: validation metrics"].get_ylabel() == (
        "validation metric (kg m-2 d-1)"
    )
    assert read_training_log(tmp_path, "cvae")["train/crps_pool4_epoch"] == [(0.0, 2.0), (1.0, 1.8)]
