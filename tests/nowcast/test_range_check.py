"""Range checks of a rollout: exploding and vanishing rain, as warnings and attributes."""

import json
import warnings

import numpy as np
import pytest
import torch

from downpour.nowcast.forecast import run_forecast
from downpour.nowcast.range_check import RolloutRangeWarning

STATS = {"max": 10.0, "mean": 2.0, "mean_max": 5.0, "wet_fraction": 0.5, "frames": 8}


def test_range_warning_fires_for_an_exploding_model(radar, stub):
    with pytest.warns(RolloutRangeWarning, match=r"exploding rain\) at lead \+2:00 h") as rec:
        ds = run_forecast(stub(lambda x: x * 3.0), radar(), init="2021-07-01T02:00", steps=4,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    # frame 2 = 3 mm/h: leads 9, 27, 81, 243; limit 2 × 10 = 20 from lead 2
    assert "domain max 27.0 mm/h (limit 2 × training max 10.0 = 20.0)" in str(rec[0].message)
    assert "3 of 4 leads" in str(rec[0].message)
    assert json.loads(ds.attrs["range_warnings"])[0] == str(rec[0].message)


def test_range_warning_fires_for_a_vanishing_model(radar, stub):
    with pytest.warns(RolloutRangeWarning, match=r"fades to no rain \(vanishing\) at lead \+1:00"):
        ds = run_forecast(stub(lambda x: x * 0.0), radar(), init="2021-07-01T02:00", steps=2,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    assert float(ds["domain_max"].max()) == 0.0


def test_range_warning_fires_when_rain_smears_into_drizzle(radar, stub):
    # 10 mm/h everywhere, × 0.02: 0.2 mm/h keeps every cell wet (> 0.1 mm/h), but the
    # max falls to 2% of the init frame's
    da = radar() * 0 + 10.0
    da[:, 0, 0] = np.nan
    with pytest.warns(RolloutRangeWarning, match=r"vanishing\) at lead \+1:00 h.*domain max "
                      r"0\.20 mm/h \(init 10\.00"):  # fmt: skip
        ds = run_forecast(stub(lambda x: x * 0.02), da, init="2021-07-01T02:00", steps=2,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    assert float(ds["domain_max"].values[0]) == pytest.approx(0.2)


def test_probability_matching_keeps_the_rollout_bounded(radar, stub):
    da = radar()
    da[3, 1, :] = [np.nan, 1.0, 2.0, 3.0]  # init frame: 02:00 .. 03:00 window ends here
    with warnings.catch_warnings():
        warnings.simplefilter("error", RolloutRangeWarning)
        ds = run_forecast(stub(lambda x: x * 3.0 + torch.arange(x.shape[-1]) * 0.01), da,
                          init="2021-07-01T03:00", steps=5, n_frames=2, transform="none",
                          stats=STATS, prob_match=True)  # fmt: skip
    init = da.values[3]
    domain = np.isfinite(init)
    for k in range(5):  # every lead has exactly the init frame's values over the domain
        lead = ds["precip_rate"].values[k]
        np.testing.assert_allclose(np.sort(lead[domain]), np.sort(init[domain]))
        assert np.isnan(lead[~domain]).all()
    assert ds.attrs["prob_match"] == 1


def test_a_model_in_range_raises_no_warning(radar, stub):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RolloutRangeWarning)
        ds = run_forecast(stub(lambda x: x), radar(), init="2021-07-01T02:00", steps=2,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    assert json.loads(ds.attrs["range_warnings"]) == []


@pytest.mark.parametrize("smooth", [1, 3])
def test_probability_matching_ranks_the_prediction_smoothed_as_configured(radar, stub, smooth):
    from downpour.nowcast.forecasters import probability_match

    da = radar()
    da[3, 1, :] = [np.nan, 1.0, 2.0, 3.0]
    da[3, 2, :] = [0.5, 7.0, 0.0, 4.0]

    def fn(x):  # a prediction whose exact and 3×3-mean ranks differ
        return torch.tensor([[9.0, 0.0, 1.0, 0.0], [0.0, 8.0, 0.0, 0.0], [0.0, 0.0, 0.0, 7.0]],
                            dtype=x.dtype)[None, None]  # fmt: skip

    ds = run_forecast(stub(fn), da, init="2021-07-01T03:00", steps=1, n_frames=2,
                      transform="none", prob_match=True, prob_match_smooth=smooth)  # fmt: skip
    init = torch.from_numpy(np.nan_to_num(da.values[3]).astype(np.float32))
    domain = torch.from_numpy(np.isfinite(da.values[3]))
    expect = probability_match(fn(init)[0, 0], init, domain, smooth=smooth).numpy()
    got = ds["precip_rate"].values[0]
    np.testing.assert_allclose(got[domain.numpy()], expect[domain.numpy()], rtol=1e-6)
    with pytest.raises(Exception, match="prob_match_smooth must be odd"):
        from downpour.config import load_config

        load_config(None, ["nowcast.prob_match_smooth=2"])
