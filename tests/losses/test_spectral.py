"""The spectral loss: hand value, all-dry gradient."""

from __future__ import annotations

import math

import pytest
import torch

import downpour.losses as L


def t4(rows: list[list[float]]) -> torch.Tensor:
    """A (1, 1, H, W) float tensor."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def m4(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)[None, None]


# 2×2 mask that excludes the bottom-right cell (an "ocean" cell)
MASK = m4([[1, 1], [1, 0]])


def test_spectral_hand_value():
    pred = t4([[1.0, 2.0], [3.0, 99.0]])  # masked -> [[1, 2], [3, 0]]
    true = t4([[2.0, 0.0], [1.0, 50.0]])  # masked -> [[2, 0], [1, 0]]
    # 2×2 DFT [[a, b], [c, d]]: a+b+c+d, a−b+c−d, a+b−c−d, a−b−c+d
    # pred: 6, 2, 0, −4 -> |.| 6, 2, 0, 4;  true: 3, 3, 1, 1
    amp_p, amp_t = [6.0, 2.0, 0.0, 4.0], [3.0, 3.0, 1.0, 1.0]
    eps = 1e-6
    pairs = zip(amp_p, amp_t, strict=True)
    expected = sum(abs(math.log(a + eps) - math.log(b + eps)) for a, b in pairs) / 4
    assert L.spectral_loss(pred, true, MASK).item() == pytest.approx(expected, rel=1e-5)


def test_spectral_all_dry_gradient_finite():
    pred = torch.zeros(2, 1, 4, 4, requires_grad=True)
    loss = L.spectral_loss(pred, torch.zeros(2, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()
