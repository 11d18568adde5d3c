"""nowcast_loss: term values by hand, the spectral variants, masks and gradients."""

import numpy as np
import pytest
import torch

from downpour.losses import spectral_loss
from downpour.nowcast.loss import nowcast_loss


def test_nowcast_loss_terms_hand_computed():
    pred = torch.tensor([[[[1.0, 3.0], [0.0, 2.0]]]])
    true = torch.tensor([[[[2.0, 3.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    total, terms = nowcast_loss(pred, true, mask, w_l1=0.4, w_spectral=0.3, w_mse=0.2, w_grad=0.1)
    # valid cells: errors -1, 0, 0 -> L1 = 1/3, MSE = 1/3
    assert float(terms["l1"]) == pytest.approx(1 / 3)
    assert float(terms["mse"]) == pytest.approx(1 / 3)
    # x-differences (both cells valid): row 0 only: pred 2, true 1 -> 1; y-differences:
    # column 0 only: pred -1, true -2 -> 1; mean of one pair per direction -> 1 + 1
    assert float(terms["grad"]) == pytest.approx(2.0)
    # masked fields [[1, 3], [0, 0]] and [[2, 3], [0, 0]]: orthonormal 2×2 FFT amplitudes
    # |a±b±c±d|/2 = [2, 1, 2, 1] and [2.5, 0.5, 2.5, 0.5] -> mean |difference| 0.5
    assert float(terms["spectral"]) == pytest.approx(0.5)
    expect = 0.4 / 3 + 0.3 * 0.5 + 0.2 / 3 + 0.1 * 2.0
    assert float(total) == pytest.approx(expect)
    assert float(terms["total"]) == pytest.approx(expect)


def test_nowcast_loss_log_spectral_is_the_shared_spectral_loss():
    pred, true = torch.rand(2, 1, 6, 5), torch.rand(2, 1, 6, 5)
    mask = torch.rand(2, 1, 6, 5) > 0.2
    _, terms = nowcast_loss(pred, true, mask, spectral="log")
    assert float(terms["spectral"]) == pytest.approx(float(spectral_loss(pred, true, mask)))
    with pytest.raises(ValueError, match="unknown spectral term"):
        nowcast_loss(pred, true, mask, spectral="phase")


def test_nowcast_loss_amplitude_ignores_a_shift_but_not_a_blur():
    # constant fields 2 vs 1 on 2×2: only the zero frequency differs, |4 - 2| over 4 freqs
    pred, true = torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 1.0)
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    _, terms = nowcast_loss(pred, true, mask, w_l1=0, w_spectral=1, w_mse=0, w_grad=0)
    assert float(terms["spectral"]) == pytest.approx(0.5)
    assert float(terms["l1"]) == 0.0 and float(terms["mse"]) == 0.0  # weight 0: not computed
    cell = torch.zeros(1, 1, 16, 16)
    cell[..., 4:7, 4:7] = 1.0
    mask = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    shifted = torch.roll(cell, shifts=(5, 3), dims=(-2, -1))
    blurred = torch.full_like(cell, 9.0 / 256)  # same mass, spread out
    _, moved = nowcast_loss(shifted, cell, mask, w_l1=0, w_spectral=1, w_mse=0, w_grad=0)
    _, smooth = nowcast_loss(blurred, cell, mask, w_l1=0, w_spectral=1, w_mse=0, w_grad=0)
    assert float(moved["spectral"]) == pytest.approx(0.0, abs=1e-6)
    assert float(smooth["spectral"]) > 0.1


def test_nowcast_loss_multi_step_shares_the_mask_and_has_gradients():
    pred = torch.rand(2, 3, 6, 6, requires_grad=True)
    true = torch.rand(2, 3, 6, 6)
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    mask[0, 0, :3] = False
    total, terms = nowcast_loss(pred, true, mask, w_l1=0.4, w_spectral=0.3, w_mse=0.2, w_grad=0.1)
    total.backward()
    assert set(terms) == {"l1", "spectral", "mse", "grad", "fss", "total"}  # fss: weight 0
    assert torch.isfinite(pred.grad).all()
    assert float(pred.grad[0, :, :3].abs().max()) == 0.0  # masked cells get no gradient
    assert float(pred.grad[0, :, 3:].abs().max()) > 0.0
    full = mask.expand(2, 3, 6, 6)
    _, again = nowcast_loss(pred, true, full, w_l1=1, w_spectral=0, w_mse=0, w_grad=0)
    assert float(again["l1"].detach()) == pytest.approx(float(terms["l1"].detach()))


def test_the_fss_term_scores_transformed_thresholds_of_the_config():
    """nowcast.fss_loss_thresholds are mm/h; the loss sees them in the network's space."""
    from downpour.config import load_config
    from downpour.losses.fractions import fss_loss
    from downpour.nowcast.module import NowcastModule

    cfg = load_config(
        None,
        ["nowcast.base_features=4", "nowcast.depth=1", "nowcast.w_fss=2.0",
         "nowcast.fss_loss_thresholds=[1.0, 5.0]", "nowcast.fss_loss_scales=[1, 3]"],
    )  # fmt: skip
    module = NowcastModule(cfg, {"max": 10.0, "mean": 1.0, "mean_max": 2.0})
    rng = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 8, 8, generator=rng) * 3
    true = torch.rand(2, 3, 8, 8, generator=rng) * 3
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    _, terms = module._loss(pred, {"targets": true, "valid": valid})
    expect = fss_loss(pred, true, valid, [np.log1p(1.0), np.log1p(5.0)], [1, 3])
    assert float(terms["fss"]) == pytest.approx(float(expect), rel=1e-6)
