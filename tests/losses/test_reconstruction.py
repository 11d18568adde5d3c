"""Reconstruction losses: weighted, mass, multi-scale, gradient, focal, hurdle (hand values)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import downpour.losses as L


def t4(rows: list[list[float]]) -> torch.Tensor:
    """A (1, 1, H, W) float tensor."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def m4(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)[None, None]


# 2×2 mask that excludes the bottom-right cell (an "ocean" cell)
MASK = m4([[1, 1], [1, 0]])
PLAIN = {"scale": 1.0, "w_min": 1.0, "w_max": 1.0, "tail_threshold": 1e9, "tail_boost": 1.0}


def test_weighted_reconstruction_hand_value():
    true = t4([[0.0, 10.0], [40.0, 100.0]])
    pred = t4([[1.0, 12.0], [30.0, 0.0]])
    # weights (scale 20, clip [0.1, 3], tail > 30 ×2, dry < 0.1 ×4):
    #   true 0   -> clip(0)=0.1, dry ×4 -> 0.4     error 1   -> 0.4
    #   true 10  -> 0.5                            error 2   -> 1.0
    #   true 40  -> clip(2)=2, tail ×2 -> 4        error 10  -> 40
    #   true 100 -> masked out (error 100 ignored)
    # mean over 3 valid cells: 41.4 / 3 = 13.8
    kw = {"scale": 20.0, "w_min": 0.1, "w_max": 3.0, "tail_threshold": 30.0, "tail_boost": 2.0}
    got = L.weighted_reconstruction(pred, true, MASK, dry_weight=4.0, **kw)
    assert got.item() == pytest.approx(13.8, rel=1e-6)
    # a second item without valid cells is left out of the batch mean, not counted as 0
    mask2 = torch.cat([MASK, torch.zeros_like(MASK)])
    got2 = L.weighted_reconstruction(
        torch.cat([pred, pred + 7]), torch.cat([true, true]), mask2, dry_weight=4.0, **kw
    )
    assert got2.item() == pytest.approx(13.8, rel=1e-6)
    # dry_weight defaults to 1: 0.1 + 1 + 40 = 41.1 / 3
    assert L.weighted_reconstruction(pred, true, MASK, **kw).item() == pytest.approx(13.7)


def test_weights_carry_no_gradient_and_shape_errors():
    true = t4([[0.0, 10.0], [40.0, 100.0]]).requires_grad_()
    pred = t4([[1.0, 12.0], [30.0, 0.0]]).requires_grad_()
    L.weighted_reconstruction(pred, true, MASK, **PLAIN).backward()
    # only through |pred - true|: ±1/3 on valid cells, 0 on the masked one
    assert pred.grad.flatten().tolist() == pytest.approx([1 / 3, 1 / 3, -1 / 3, 0.0])
    with pytest.raises(ValueError, match="mask"):
        L.weighted_reconstruction(pred, true, torch.ones(2, 2, dtype=torch.bool), **PLAIN)
    with pytest.raises(ValueError, match="same shape"):
        L.weighted_reconstruction(pred, true[..., :1], MASK, **PLAIN)


def test_mass_conservation_hand_value():
    pred = torch.cat([t4([[1.0, 3.0], [0.0, 5.0]]), torch.full((1, 1, 2, 2), 2.0)])
    true = torch.cat([t4([[2.0, 3.0], [0.0, 9.0]]), torch.full((1, 1, 2, 2), 1.0)])
    # item 0: land means 4/3 vs 5/3 -> 1/3; item 1: 2 vs 1 -> 1; batch mean 2/3
    got = L.mass_conservation(pred, true, MASK)  # (1, 1, H, W) mask shared by the batch
    assert got.item() == pytest.approx(2 / 3, rel=1e-6)


def test_mass_conservation_dry_day_is_finite():
    zero = torch.zeros(2, 1, 3, 3, requires_grad=True)
    loss = L.mass_conservation(zero, torch.zeros(2, 1, 3, 3), torch.ones(1, 1, 3, 3, dtype=bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(zero.grad).all()


def test_multiscale_hand_sum_odd_size():
    pred = t4([[100.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    true = t4([[0.0, 2.0, 0.0], [3.0, 6.0, 5.0], [6.0, 7.0, 0.0]])
    mask = m4([[0, 1, 1], [1, 1, 1], [1, 1, 1]])
    # plain masked MAE (all weights 1) at each level:
    # full 3×3: errors 1, 2, 0, 2, 0, 0, 0, 8 on the 8 valid cells -> 13/8 = 1.625
    # 1/2 (2×2, ceil): blocks {(0,1),(1,0),(1,1)}: 8/3 vs 11/3 -> 1; {(0,2),(1,2)}: 3.5 vs 2.5
    #   -> 1; {(2,0),(2,1)}: 6.5 vs 6.5 -> 0; {(2,2)}: 8 vs 0 -> 8; mean 10/4 = 2.5
    # 1/4 (1×1, ceil): 36/8 = 4.5 vs 29/8 = 3.625 -> 0.875
    # total = 1.625 + 0.3·2.5 + 0.1·0.875 = 2.4625
    got = L.multiscale_reconstruction(pred, true, mask, weights=(1.0, 0.3, 0.1), **PLAIN)
    assert got.item() == pytest.approx(2.4625, rel=1e-6)


def test_multiscale_invalid_coarse_cell_and_kwargs_forwarded():
    pred = t4([[99.0, 99.0, 1.0, 2.0], [99.0, 99.0, 3.0, 4.0]])
    true = t4([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    mask = m4([[0, 0, 1, 1], [0, 0, 1, 1]])
    # 1/2 level only: left coarse cell has no valid fine cell -> invalid; right: 2.5 vs 0.5 -> 2
    got = L.multiscale_reconstruction(pred, true, mask, weights=(0.0, 1.0), **PLAIN)
    assert got.item() == pytest.approx(2.0)
    kw = {"scale": 2.0, "w_min": 0.1, "w_max": 3.0, "tail_threshold": 1.0, "tail_boost": 3.0}
    one = L.multiscale_reconstruction(pred, true, mask, weights=(1.0,), **kw)
    assert one.item() == pytest.approx(L.weighted_reconstruction(pred, true, mask, **kw).item())


def test_gradient_loss_variants_differ_when_signs_differ():
    pred = t4([[0.0, 2.0], [5.0, 100.0]])  # 100 sits on the masked cell: never counted
    true = t4([[2.0, 0.0], [5.0, 1.0]])
    # along x: only the top pair is valid: Δpred = +2, Δtrue = −2
    #   signed |2 − (−2)| = 4; magnitude |2 − 2| = 0
    # along y: only the left pair is valid: Δpred = 5, Δtrue = 3 -> 2 for both variants
    assert L.gradient_loss(pred, true, MASK, variant="signed").item() == pytest.approx(6.0)
    assert L.gradient_loss(pred, true, MASK, variant="magnitude").item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="signed"):
        L.gradient_loss(pred, true, MASK, variant="sobel")


def test_gradient_loss_single_row_has_no_vertical_term():
    pred, true = t4([[0.0, 3.0, 1.0]]), t4([[0.0, 1.0, 1.0]])
    # x pairs: Δpred 3, −2; Δtrue 1, 0 -> |2| + |−2| = 4 / 2 = 2; no y pairs
    assert L.gradient_loss(pred, true, m4([[1, 1, 1]])).item() == pytest.approx(2.0)


def test_extreme_focal_weight_only_at_or_above_threshold():
    true = t4([[10.0, 50.0], [60.0, 0.0]])
    pred = t4([[12.0, 49.0], [60.0, 5.0]])
    # errors 2, 1, 0 (5 masked); threshold 50 is inclusive:
    #   true 10 -> weight 1; true 50 -> 1 + 10(1 − e^{−1})²; true 60 -> error 0
    expected = (2.0 + (1.0 + 10.0 * (1.0 - math.exp(-1.0)) ** 2) * 1.0 + 0.0) / 3.0
    got = L.extreme_focal(pred, true, MASK, threshold=50.0, gamma=2.0, boost=10.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # just above 50: no cell is extreme, plain MAE (2 + 1 + 0) / 3
    assert L.extreme_focal(pred, true, MASK, threshold=50.5).item() == pytest.approx(1.0)


def test_extreme_focal_gradient_finite_for_small_gamma_at_zero_error():
    pred = t4([[60.0, 1.0], [2.0, 3.0]]).requires_grad_()
    true = t4([[60.0, 1.0], [2.0, 3.0]])
    L.extreme_focal(pred, true, MASK, threshold=50.0, gamma=0.5).backward()
    assert torch.isfinite(pred.grad).all()


def test_hurdle_bce_matches_torch_and_intensity_ignores_dry_cells():
    g = torch.Generator().manual_seed(1)
    true = torch.cat([t4([[0.0, 2.0], [5.0, 3.0]]), t4([[0.05, 0.0], [7.0, 0.0]])])
    p_wet = torch.rand(2, 1, 2, 2, generator=g)
    p_wet[0, 0, 0, 0], p_wet[1, 0, 0, 1] = 0.0, 1.0  # exercise the clamp
    intensity = torch.cat([t4([[1000.0, 3.0], [1.0, 7.0]]), t4([[500.0, 9.0], [6.0, 0.0]])])
    intensity.requires_grad_()
    total, bce, inten = L.hurdle_loss(p_wet, intensity, true, MASK, **PLAIN)
    m = MASK.expand_as(true)
    ref = F.binary_cross_entropy(
        p_wet.clamp(1e-6, 1 - 1e-6)[m], (true >= 0.1).float()[m]
    )  # same valid-cell count in both items, so the pooled mean is the batch mean
    assert bce.item() == pytest.approx(ref.item(), rel=1e-5)
    # wet valid cells: item 0: (0,1) |3 − 2| = 1, (1,0) |1 − 5| = 4 -> 2.5 (cell (1,1) masked);
    # item 1: only (1,0) |6 − 7| = 1 (0.05 and 0 are dry) -> 1; batch mean 1.75
    assert inten.item() == pytest.approx(1.75)
    assert total.item() == pytest.approx(bce.item() + 1.75)
    inten.backward()
    assert intensity.grad[0, 0, 0, 0] == 0 and intensity.grad[1, 0, 0, 0] == 0  # dry cells


def test_hurdle_all_dry_is_finite():
    p_wet = torch.full((2, 1, 3, 3), 0.3, requires_grad=True)
    intensity = torch.ones(2, 1, 3, 3, requires_grad=True)
    total, bce, inten = L.hurdle_loss(
        p_wet, intensity, torch.zeros(2, 1, 3, 3), torch.ones(1, 1, 3, 3, dtype=bool), **PLAIN
    )
    total.backward()
    assert inten.item() == 0.0 and bce.item() == pytest.approx(-math.log(0.7), rel=1e-6)
    assert torch.isfinite(p_wet.grad).all() and torch.isfinite(intensity.grad).all()
