"""The Lightning module's pieces: the rollout that feeds predictions back, the rainy crop."""

import numpy as np
import torch

from downpour.nowcast.module import _rainy_crop, rollout_batch


def test_rollout_feeds_predictions_back():
    class PlusOne(torch.nn.Module):
        def forward(self, frames, enc):
            return frames[:, -1:] + 1.0

    inputs = torch.tensor([1.0, 2.0, 5.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = rollout_batch(PlusOne(), inputs, torch.zeros(1, 4, 4))
    assert out[0, :, 0, 0].tolist() == [6.0, 7.0, 8.0, 9.0]


def test_crop_is_shared_by_inputs_targets_mask_and_prefers_rain():
    torch.manual_seed(0)
    inputs = torch.arange(2 * 3 * 24 * 24, dtype=torch.float32).reshape(2, 3, 24, 24)
    targets = torch.zeros(2, 1, 24, 24)
    targets[..., 16:, 16:] = 1.0  # rain only in the lower right corner
    valid = torch.ones(2, 1, 24, 24, dtype=torch.bool)
    batch = {"inputs": inputs, "targets": targets, "valid": valid}
    out = _rainy_crop(batch, 8, 0.0)
    assert out["inputs"].shape == (2, 3, 8, 8) and out["valid"].shape == (2, 1, 8, 8)
    y0, x0 = divmod(int(out["inputs"][0, 0, 0, 0]), 24)
    assert torch.equal(out["inputs"], inputs[..., y0 : y0 + 8, x0 : x0 + 8])
    assert torch.equal(out["targets"], targets[..., y0 : y0 + 8, x0 : x0 + 8])
    hits = []
    for seed in range(20):
        torch.manual_seed(seed)
        hits.append(float(_rainy_crop(batch, 8, 0.0)["targets"].sum()))
    # a random 8×8 crop overlaps the 8×8 rain corner with probability ~1/4 per try
    assert np.mean([h > 0 for h in hits]) > 0.5
    assert _rainy_crop(batch, 32, 0.0) is batch  # larger than the grid: unchanged


def test_flips_turn_the_motion_with_the_field():
    """A blob moving right (u = +1): after a left-right flip it moves left (u = −1), and the
    flipped motion still carries the flipped field onto the flipped target."""
    from downpour.models.warp import advect
    from downpour.nowcast.module import _flip

    inputs = torch.zeros(64, 1, 6, 8)
    inputs[:, 0, 2, 1] = 1.0
    motion = torch.zeros(64, 2, 6, 8)
    motion[:, 0], motion[:, 1] = 1.0, 0.5
    targets = advect(inputs, motion, 1)
    batch = {"inputs": inputs, "targets": targets, "valid": torch.ones(64, 1, 6, 8).bool(),
             "motion": motion}  # fmt: skip
    torch.manual_seed(0)
    out = _flip(batch)
    u, v = out["motion"][:, 0, 0, 0], out["motion"][:, 1, 0, 0]
    assert set(u.tolist()) == {1.0, -1.0} and set(v.tolist()) == {0.5, -0.5}  # both flips seen
    torch.testing.assert_close(advect(out["inputs"], out["motion"], 1), out["targets"])


def test_rollout_batch_gives_the_advection_model_its_motion():
    from downpour.models.advection_nowcast import AdvectionNowcaster

    net = AdvectionNowcaster(n_frames=2, base_features=4, depth=1)
    frames = torch.rand(1, 2, 8, 8)
    try:
        rollout_batch(net, frames, torch.zeros(1, 2, 4))
    except ValueError as exc:
        assert "needs the motion field" in str(exc)
    else:
        raise AssertionError("no motion accepted")
    out = rollout_batch(net, frames, torch.zeros(1, 2, 4), motion=torch.zeros(1, 2, 8, 8))
    assert out.shape == (1, 2, 8, 8)
