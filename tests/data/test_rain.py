"""Rain transforms (log1p, dBR with its floor) and the temporal encoding."""

import numpy as np
import pytest
import torch

from downpour.data.rain import (
    DBR_FLOOR,
    inverse_rain_transform,
    rain_transform,
    temporal_encoding,
)


def test_transform_round_trips():
    rate = np.array([0.1, 0.5, 1.0, 7.3, 80.0, 250.0])
    for kind in ("log", "dbr", "none"):
        back = inverse_rain_transform(rain_transform(rate, kind), kind)
        np.testing.assert_allclose(back, rate, rtol=1e-12)
        t = torch.tensor(rate, dtype=torch.float32)
        back_t = inverse_rain_transform(rain_transform(t, kind), kind)
        torch.testing.assert_close(back_t, t, rtol=1e-5, atol=0)
    np.testing.assert_allclose(rain_transform(np.array([0.0, np.e - 1]), "log"), [0.0, 1.0])


def test_dbr_values_and_floor():
    rate = np.array([0.0, 0.05, 0.0999, 0.1, 1.0, 10.0, 100.0, np.nan])
    dbr = rain_transform(rate, "dbr")
    np.testing.assert_allclose(dbr[:7], [-15.0, -15.0, -15.0, -10.0, 0.0, 10.0, 20.0])
    assert np.isnan(dbr[7])
    np.testing.assert_allclose(inverse_rain_transform(dbr[:3], "dbr"), [0.0, 0.0, 0.0])
    assert DBR_FLOOR == -15.0
    with pytest.raises(ValueError, match="valid: 'log', 'dbr', 'none'"):
        rain_transform(rate, "sqrt")


def test_temporal_encoding_known_times():
    enc = temporal_encoding(
        np.array(["2021-07-01T06:00", "2021-01-01T00:00", "2021-01-01T18:00"], "datetime64[ns]")
    )
    day = 2 * np.pi * (181 + 0.25) / 365.25  # 1 July 2021 is day 182 (0-based 181)
    np.testing.assert_allclose(enc[0], [1.0, 0.0, np.sin(day), np.cos(day)], atol=1e-6)
    np.testing.assert_allclose(enc[1], [0.0, 1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(enc[2, :2], [-1.0, 0.0], atol=1e-6)
