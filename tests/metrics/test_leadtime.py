"""Per-lead nowcast scores (LeadScores) and the targets against persistence."""

import numpy as np
import pytest

from downpour.metrics.leadtime import LeadScores, beats_persistence, threshold_name


def test_persistence_scores_equal_hand_computed_ones():
    times = np.datetime64("2021-07-01T00:00", "ns") + np.arange(2) * np.timedelta64(1, "h")
    obs = np.array([[[0.0, 2.0], [6.0, 0.0]], [[0.0, 0.0], [12.0, 3.0]]], dtype=np.float32)
    persistence = obs[:1]  # the init frame repeated: tests/cli/test_cli_nowcast.py checks it
    scores = LeadScores(1, [1.0, 5.0, 10.0], [1], np.log1p)
    scores.update(persistence, obs[1:], times[0])
    s = scores.compute()[0]
    # > 1: persistence (0,1),(1,0); truth (1,0),(1,1) -> a 1, b 1, c 1
    assert s["csi"] == {"1mm/h": pytest.approx(1 / 3), "5mm/h": 1.0, "10mm/h": 0.0}
    assert s["rmse"] == pytest.approx(3.5)  # errors 0, 2, -6, -3
    assert s["mae"] == pytest.approx(2.75)
    d = np.log1p(obs[0]) - np.log1p(obs[1])
    assert s["rmse_norm"] == pytest.approx(float(np.sqrt(np.mean(d**2))), rel=1e-6)
    assert s["fss"]["1mm/h"][1] == pytest.approx(1 - 2 / 4)  # (ΣΔ²=2)/(ΣPf²+ΣPo²=2+2)
    assert s["n_inits"] == 1 and len(s["rapsd"]) == 1


def test_a_lead_never_observed_has_no_scores():
    scores = LeadScores(2, [1.0], [1], np.log1p)
    obs = np.ones((1, 3, 3))
    scores.update(obs, obs, np.datetime64("2021-07-01T00:00"))
    assert scores.compute()[1] == {"n_inits": 0}
    assert threshold_name(0.5) == "0.5mm/h"


def test_beats_persistence_flags():
    m = {"n_inits": 3, "csi": {"1mm/h": 0.5, "10mm/h": 0.1}, "fss": {"1mm/h": {1: 0.6, 5: 0.8}}}
    p = {"n_inits": 3, "csi": {"1mm/h": 0.4, "10mm/h": 0.1}, "fss": {"1mm/h": {1: 0.5, 5: 0.9}}}
    assert beats_persistence(m, p, "10mm/h") == {
        "csi_1": True, "fss_1": False, "csi_heavy_not_worse": True,
    }  # fmt: skip
