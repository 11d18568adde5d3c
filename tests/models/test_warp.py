"""Semi-Lagrangian advection in torch: known shifts, pysteps' scheme, gradients."""

import numpy as np
import pytest
import torch

from downpour.models.warp import advect, displacements, warp


def _blob(h=12, w=14):
    field = torch.zeros(1, 1, h, w, dtype=torch.float64)
    field[0, 0, 4:6, 3:5] = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    return field


def test_a_constant_motion_moves_the_field_by_whole_pixels_per_step():
    field = _blob()
    motion = torch.zeros(1, 2, 12, 14, dtype=torch.float64)
    motion[:, 0], motion[:, 1] = 2.0, -1.0  # 2 px/step in x (right), 1 px/step up in y
    out = advect(field, motion, 3)
    for k in (1, 2, 3):
        expect = torch.zeros(12, 14, dtype=torch.float64)
        expect[4 - k : 6 - k, 3 + 2 * k : 5 + 2 * k] = field[0, 0, 4:6, 3:5]
        torch.testing.assert_close(out[0, k - 1], expect, rtol=0, atol=1e-12)


def test_half_pixel_motion_interpolates_linearly_and_rain_flows_out_not_in():
    field = torch.zeros(1, 1, 1, 6, dtype=torch.float64)
    field[0, 0, 0, :] = torch.tensor([8.0, 0.0, 0.0, 0.0, 0.0, 4.0], dtype=torch.float64)
    motion = torch.zeros(1, 2, 1, 6, dtype=torch.float64)
    motion[:, 0] = 0.5
    out = advect(field, motion, 1, fill=0.0)[0, 0, 0]
    # pixel j takes the value at j − 0.5: the first pixel's source is outside → fill
    expect = torch.tensor([0.0, 4.0, 0.0, 0.0, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-12)


def test_uniform_displacements_are_minus_k_times_the_velocity():
    motion = torch.tensor([1.5, -0.25]).reshape(1, 2, 1, 1).expand(1, 2, 5, 5).clone()
    d = displacements(motion, 4)
    for k in range(4):
        assert torch.allclose(d[0, k, 0], torch.full((5, 5), -1.5 * (k + 1)))
        assert torch.allclose(d[0, k, 1], torch.full((5, 5), 0.25 * (k + 1)))


def test_advection_is_pysteps_semilagrangian_extrapolation_for_a_varying_flow():
    pytest.importorskip("pysteps")
    from downpour.nowcast.motion import require_pysteps

    _, nowcasts = require_pysteps()
    rng = np.random.default_rng(3)
    h, w = 40, 52
    yy, xx = np.mgrid[:h, :w]
    rain = 10 * np.exp(-((yy - 20) ** 2 + (xx - 18) ** 2) / 30.0) + rng.random((h, w))
    v = np.stack([1.3 + 0.4 * np.sin(yy / 7.0), -0.8 + 0.3 * np.cos(xx / 9.0)])
    expect = np.nan_to_num(nowcasts.get_method("extrapolation")(rain, v, 5))
    ours = advect(torch.from_numpy(rain)[None, None], torch.from_numpy(v)[None], 5)[0].numpy()
    np.testing.assert_allclose(ours, expect, rtol=0, atol=1e-10)


def test_warp_is_differentiable_in_the_field():
    field = _blob().requires_grad_(True)
    d = torch.full((1, 2, 12, 14), 0.5, dtype=torch.float64)
    warp(field, d).sum().backward()
    assert field.grad is not None and float(field.grad.abs().sum()) > 0
