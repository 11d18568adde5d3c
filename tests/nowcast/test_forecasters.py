"""The forecaster registry (model, persistence, extrapolation; one signature), prob. matching."""

import warnings

import numpy as np
import pytest
import torch

from downpour.core.errors import DownpourError
from downpour.data.rain import rain_transform
from downpour.nowcast.forecast import (
    extrapolation_forecast,
    forecast_dataset,
    nowcast,
    persistence_forecast,
    run_forecast,
)
from downpour.nowcast.forecasters import FORECASTERS, probability_match
from downpour.nowcast.synthetic import make_embedded_radar

# ------------------------------------------------------------------ registry


def test_registry_names_and_unknown_method_lists_the_valid_ones(radar):
    assert FORECASTERS.names() == ["extrapolation", "model", "persistence"]
    valid = r"unknown nowcast method 'climatology'; valid names: extrapolation, model, persistence"
    with pytest.raises(DownpourError, match=valid):
        FORECASTERS.get("climatology")
    with pytest.raises(DownpourError, match=valid):
        nowcast("climatology", radar(), 3, 2)


def test_model_method_is_the_rollout_of_run_forecast(radar, stub):
    da = radar()
    net = stub(lambda x: x * 1.5 + 0.1)
    context = {"net": net, "n_frames": 2, "transform": "log", "prob_match": False}
    leads = FORECASTERS.get("model")(da, 3, 4, **context)
    direct = run_forecast(net, da, init=da["time"].values[3], steps=4, n_frames=2,
                          transform="log")  # fmt: skip
    wrapped = forecast_dataset(leads, da, 3, "model")
    np.testing.assert_array_equal(wrapped["precip_rate"].values, direct["precip_rate"].values)
    # by hand: log1p of the last frame (no-data as 0 mm/h), fed back four times, expm1
    last = torch.log1p(torch.from_numpy(np.nan_to_num(da.values[3:4], nan=0.0)))
    expect = []
    for _ in range(4):
        last = last * 1.5 + 0.1
        expect.append(torch.expm1(last.double())[0].numpy())
    np.testing.assert_array_equal(leads, np.stack(expect))
    assert leads.shape == (4, 3, 4) and leads.dtype == np.float64


def test_persistence_method_repeats_the_init_frame(radar):
    da = radar()
    leads = FORECASTERS.get("persistence")(da, 3, 4)
    np.testing.assert_array_equal(leads, np.repeat(da.values[3:4].astype(np.float64), 4, axis=0))
    direct = persistence_forecast(da, init="2021-07-01T03:00", steps=4)
    wrapped = forecast_dataset(leads, da, 3, "persistence")
    np.testing.assert_array_equal(wrapped["precip_rate"].values, direct["precip_rate"].values)
    assert nowcast("persistence", da, 3, 4).identical(direct)


def test_extrapolation_method_is_pysteps_lucas_kanade():
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    from pysteps import motion, nowcasts

    da = make_embedded_radar(seed=1, hours=2)["precip_rate"]
    i, steps, n = 10, 3, 4
    leads = FORECASTERS.get("extrapolation")(da, i, steps, n_frames=n)
    direct = extrapolation_forecast(da, init=da["time"].values[i], steps=steps, n_frames=n)
    wrapped = forecast_dataset(leads, da, i, "extrapolation")
    np.testing.assert_array_equal(wrapped["precip_rate"].values, direct["precip_rate"].values)
    frames = np.asarray(da.values[i - n + 1 : i + 1], dtype=np.float64)
    dbr = rain_transform(np.nan_to_num(frames, nan=0.0), "dbr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        velocity = motion.get_method("LK")(dbr, verbose=False)
        last = np.nan_to_num(frames[-1], nan=0.0)
        expect = nowcasts.get_method("extrapolation")(last, velocity, steps)
    np.testing.assert_array_equal(leads, np.nan_to_num(expect, nan=0.0))
    assert float(np.abs(leads[-1] - frames[-1]).max()) > 1.0  # the rain moved


def test_every_method_takes_one_signature_and_checks_its_window(radar, stub):
    da = radar()
    context = {"net": stub(lambda x: x), "n_frames": 2, "transform": "none",
               "prob_match": False, "unused": object()}  # fmt: skip
    names = FORECASTERS.names()
    if "extrapolation" in names:
        try:
            import cv2  # noqa: F401
            import pysteps  # noqa: F401
        except ImportError:
            names.remove("extrapolation")
    for name in names:
        leads = FORECASTERS.get(name)(da, 3, 2, **context)
        assert leads.shape == (2, 3, 4), name
        if name == "persistence":  # needs only the init frame
            assert FORECASTERS.get(name)(da, 0, 1, **context).shape == (1, 3, 4)
            continue
        with pytest.raises(DownpourError, match=r"--init 2021-07-01T00:00 has only 1 frame"):
            FORECASTERS.get(name)(da, 0, 2, **context)


# ------------------------------------------------------------------ probability matching


def test_probability_matching_by_smoothed_ranks_removes_pixel_noise():
    i, j = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    field = 0.3 * ((i + j) % 2 == 0).float()  # pixel-scale noise
    field[2:7, 2:7] += 0.2  # a weak 5×5 rain area
    reference = torch.zeros(9, 9)
    reference[:3, :3] = 5.0  # 9 rainy cells
    valid = torch.ones(9, 9, dtype=torch.bool)
    exact = probability_match(field, reference, valid)
    smooth = probability_match(field, reference, valid, smooth=3)
    assert sorted(smooth.flatten().tolist()) == sorted(reference.flatten().tolist())
    # smoothed ranks: the 9 rainy cells fill the core of the rain area
    assert torch.equal(smooth[3:6, 3:6], torch.full((3, 3), 5.0))
    # exact ranks follow the noise: no two rainy cells side by side
    wet = exact > 0
    assert not (wet[:, 1:] & wet[:, :-1]).any() and int(wet.sum()) == 9
    assert torch.equal(probability_match(field, reference, valid, smooth=1), exact)


def test_a_given_motion_is_used_instead_of_a_second_optical_flow():
    """verify computes the Lucas-Kanade motion once per init for the model and the baseline."""
    pytest.importorskip("pysteps")
    da = make_embedded_radar(seed=1, hours=2)["precip_rate"]
    still = np.zeros((2, *da.shape[1:]))
    leads = FORECASTERS.get("extrapolation")(da, 10, 2, n_frames=4, motion=still)
    np.testing.assert_allclose(leads[-1], np.nan_to_num(da.values[10]), atol=1e-12)
