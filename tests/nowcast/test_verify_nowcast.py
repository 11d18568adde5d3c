"""Verification per lead time: model against persistence and pysteps extrapolation."""

import json

import pytest

from downpour.core.errors import DownpourError
from downpour.nowcast.verify import score_rows, verify_nowcast


def test_verify_scores_model_against_persistence(trained_nowcast, tmp_path):
    res = verify_nowcast(
        trained_nowcast, hours=3, extrapolation=False, out_dir=tmp_path, echo=lambda m: None
    )
    assert res["period"] == "test" and res["leads"] == [60, 120, 180]
    assert all(t >= "2021-07-01T18:00" for t in res["inits"])  # truth in the held-out block
    lead1 = res["methods"]["persistence"][0]
    assert lead1["n_inits"] == len(res["inits"]) and 0 <= lead1["csi"]["1mm/h"] <= 1
    assert set(res["beats_persistence"][0]) == {"csi_1", "fss_1", "csi_heavy_not_worse"}
    saved = json.loads((tmp_path / "metrics" / "verify_nowcast.json").read_text())
    assert saved["leads"] == [60, 120, 180]
    assert (tmp_path / "figures" / "nowcast_scores.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "nowcast_maps.png").stat().st_size > 1000
    rows = score_rows(res)
    assert [r["lead_min"] for r in rows] == [60, 120, 180]
    assert rows[0]["persistence"]["n"] == len(res["inits"])


def test_verify_with_pysteps_extrapolation(trained_nowcast, tmp_path):
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    res = verify_nowcast(trained_nowcast, hours=1, echo=lambda m: None)
    assert "extrapolation" in res["methods"], res["notes"]
    assert res["methods"]["extrapolation"][0]["n_inits"] == len(res["inits"])


def test_a_failing_baseline_is_skipped_with_a_note(trained_nowcast, monkeypatch):
    pytest.importorskip("pysteps")
    import downpour.nowcast.forecasters as forecasters

    def broken():
        raise DownpourError("no OpenCV here")

    monkeypatch.setattr(forecasters, "require_pysteps", broken)
    res = verify_nowcast(trained_nowcast, hours=1, echo=lambda m: None)
    assert list(res["methods"]) == ["model", "persistence"]
    assert res["notes"] == ["extrapolation baseline skipped: no OpenCV here"]
