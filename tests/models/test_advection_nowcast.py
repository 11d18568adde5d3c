"""The advection nowcaster: zero correction is extrapolation; the correction is carried along."""

import numpy as np
import pytest
import torch

from downpour.config import load_config
from downpour.data.rain import rain_transform
from downpour.models.advection_nowcast import AdvectionNowcaster
from downpour.models.nowcast import NowcastUNet
from downpour.models.registry import build_model
from downpour.models.warp import advect


def _zero_head(net: AdvectionNowcaster) -> AdvectionNowcaster:
    with torch.no_grad():
        net.unet.head.weight.zero_()
        net.unet.head.bias.zero_()
    return net.eval()


def test_the_config_builds_the_advection_model_and_refuses_one_frame():
    cfg = load_config(None, ["nowcast.model=advection", "nowcast.base_features=4"])
    assert isinstance(build_model("nowcast", cfg, {}), AdvectionNowcaster)
    cfg = load_config(None, ["nowcast.base_features=4"])
    assert isinstance(build_model("nowcast", cfg, {}), NowcastUNet)
    with pytest.raises(Exception, match="n_frames to 2 or more"):
        load_config(None, ["nowcast.model=advection", "nowcast.n_frames=1"])


@pytest.mark.parametrize("transform", ["log", "none"])
def test_zero_correction_is_the_advected_latest_frame(transform):
    torch.manual_seed(0)
    net = _zero_head(AdvectionNowcaster(n_frames=3, base_features=4, depth=2, transform=transform))
    rate = torch.rand(2, 3, 16, 20) * 10.0
    frames = rain_transform(rate, transform)
    motion = torch.randn(2, 2, 16, 20) * 0.7
    out = net.rollout(frames, torch.rand(2, 4, 4), motion)
    expect = rain_transform(advect(rate[:, -1:], motion, 4), transform)
    torch.testing.assert_close(out, expect, rtol=1e-6, atol=1e-6)


def test_the_correction_is_carried_along_the_flow():
    """A constant correction c per step, moving with the rain: lead k is base + k·c where
    the carried correction has not left the grid."""

    net = AdvectionNowcaster(n_frames=2, base_features=4, depth=1, transform="none")
    net.unet.residual = lambda window, enc, extra: torch.full_like(window[:, :1], 0.5)
    frames = torch.zeros(1, 2, 8, 10)
    motion = torch.zeros(1, 2, 8, 10)
    motion[:, 0] = 1.0  # 1 px/step to the right: corrections enter from the left edge as 0
    out = net.rollout(frames, torch.zeros(1, 3, 4), motion)
    # each step adds 0.5 (scale 1); at lead 3 pixel x ≥ 2 carries all three, x = 0 only
    # this step's (the carried correction flowed right, zero flowed in from outside)
    assert torch.allclose(out[0, 2, :, 2:], torch.full((8, 8), 1.5))
    assert torch.allclose(out[0, 2, :, 1], torch.full((8,), 1.0))
    assert torch.allclose(out[0, 2, :, 0], torch.full((8,), 0.5))


def test_model_with_zero_correction_equals_the_pysteps_extrapolation_nowcast():
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    from downpour.nowcast.forecasters import FORECASTERS
    from downpour.nowcast.synthetic import make_embedded_radar

    da = make_embedded_radar(seed=1, hours=3, height=48, width=48, step_minutes=15)
    da = da["precip_rate"]
    da.attrs["step_minutes"] = 15
    net = _zero_head(AdvectionNowcaster(n_frames=4, base_features=4, depth=2, transform="log"))
    net = net.double()
    i, steps = 6, 4
    model = FORECASTERS.get("model")(da, i, steps, net=net, n_frames=4, transform="log")
    extrap = FORECASTERS.get("extrapolation")(da, i, steps, n_frames=4)
    assert float(np.abs(extrap[-1] - np.nan_to_num(da.values[i])).max()) > 0.5  # it moved
    np.testing.assert_allclose(model, extrap, rtol=1e-5, atol=1e-5)  # frames enter as float32


def test_an_untrained_model_is_close_to_extrapolation_and_never_negative():
    torch.manual_seed(1)
    net = AdvectionNowcaster(n_frames=3, base_features=4, depth=2).eval()
    frames = torch.rand(1, 3, 16, 16) * 2.0
    motion = torch.zeros(1, 2, 16, 16)
    with torch.no_grad():
        out = net.rollout(frames, torch.rand(1, 6, 4), motion)
    assert float(out.min()) >= 0.0
    assert float((out - frames[:, -1:]).abs().mean()) < 0.2
