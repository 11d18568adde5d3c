"""The FSS loss: the hard FSS in the sharp limit (pysteps as the reference), fading is worst."""

import numpy as np
import pytest
import torch

from downpour.losses.fractions import fss_loss


def _fields(seed=0, h=24, w=30):
    rng = np.random.default_rng(seed)
    f = rng.gamma(0.4, 3.0, (h, w))
    o = np.roll(f, 2, axis=1) * rng.uniform(0.5, 1.5, (h, w))
    return f, o


@pytest.mark.parametrize("scale", [1, 3, 7])
def test_sharp_limit_is_one_minus_pysteps_fss(scale):
    pysteps = pytest.importorskip("pysteps.verification.spatialscores")
    f, o = _fields()
    expect = 1.0 - pysteps.fss(f, o, 2.0, scale)
    t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    got = fss_loss(t(f), t(o), torch.ones(1, 1, *f.shape, dtype=torch.bool), [2.0], [scale],
                   sharpness=1e-6)  # fmt: skip
    assert float(got) == pytest.approx(expect, abs=1e-9)


def test_hand_computed_one_cell_shift():
    """Two single-cell events one cell apart: at scale 1 no overlap (loss 1); at scale 3 the
    fractions are 1/9 on two 3×3 windows that share 6 cells: Σ(F−O)² = 6/81, ΣF² + ΣO² = 18/81."""
    f = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    o = torch.zeros_like(f)
    f[0, 0, 3, 3], o[0, 0, 3, 4] = 5.0, 5.0
    valid = torch.ones_like(f, dtype=torch.bool)
    assert float(fss_loss(f, o, valid, [1.0], [1], sharpness=1e-6)) == pytest.approx(1.0)
    assert float(fss_loss(f, o, valid, [1.0], [3], sharpness=1e-6)) == pytest.approx(6 / 18)


def test_fading_scores_worse_than_a_sharp_displaced_forecast():
    f, o = _fields(1)
    t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    valid = torch.ones(1, 1, *f.shape, dtype=torch.bool)
    sharp = fss_loss(t(f), t(o), valid, [1.0, 5.0], [1, 5])
    faded = fss_loss(t(f * 0.2), t(o), valid, [1.0, 5.0], [1, 5])
    assert float(faded) > float(sharp)


def test_masked_cells_are_no_event_and_empty_fields_are_left_out():
    f = torch.zeros(2, 1, 5, 5, dtype=torch.float64)
    o = torch.zeros_like(f)
    f[0, 0, 2, 2] = 3.0  # a false alarm, but in a masked cell
    valid = torch.ones_like(f, dtype=torch.bool)
    valid[0, 0, 2, 2] = False
    f[1, 0, 1, 1], o[1, 0, 1, 1] = 3.0, 3.0  # a hit in the second field
    loss = fss_loss(f, o, valid, [1.0], [1], sharpness=1e-6)
    assert float(loss) == pytest.approx(0.0, abs=1e-9)  # field 1 left out, field 2 perfect


def test_the_loss_has_gradients_towards_the_observed_rain():
    f, o = _fields(2)
    pred = (torch.from_numpy(f * 0.5)[None, None]).requires_grad_(True)
    fss_loss(pred, torch.from_numpy(o)[None, None], torch.ones_like(pred, dtype=torch.bool),
             [1.0], [3]).backward()  # fmt: skip
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
