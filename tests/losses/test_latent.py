"""Latent losses: KL divergence (closed form, free bits) and sparsity."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

import downpour.losses as L


def t4(rows: list[list[float]]) -> torch.Tensor:
    """A (1, 1, H, W) float tensor."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def m4(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)[None, None]


# 2×2 mask that excludes the bottom-right cell (an "ocean" cell)
MASK = m4([[1, 1], [1, 0]])


def test_kl_standard_normal_hand_value():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # dim 0: ½(0 − 0 + 1 + 1 − 1) = 0.5; dim 1: ½(0 − ln4 + 4 + 0 − 1) = 1.5 − ln2
    kl, raw = L.kl_divergence(mu, logvar)
    assert kl.item() == pytest.approx(2.0 - math.log(2.0), rel=1e-6)
    assert raw.item() == kl.item()
    # zeros as prior parameters mean the standard normal
    kl0, _ = L.kl_divergence(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))
    assert kl0.item() == kl.item()


def test_kl_conditional_prior_closed_form_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar, pmu, plv = (torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(4))
    kl, raw = L.kl_divergence(mu, logvar, pmu, plv)
    q, p = Normal(mu, (0.5 * logvar).exp()), Normal(pmu, (0.5 * plv).exp())
    ref = torch.distributions.kl_divergence(q, p).sum(-1).mean()
    assert kl.item() == pytest.approx(ref.item(), rel=1e-10)
    # Monte-Carlo: E_q[log q(z) − log p(z)], 400k draws per item
    z = q.sample((400_000,))
    samples = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(-1)  # (N,) batch-mean per draw
    se = samples.std().item() / math.sqrt(len(samples))
    assert abs(samples.mean().item() - kl.item()) < 4 * se


def test_free_bits_clamp_and_gradient():
    mu = torch.tensor([[1.0, 0.1, 0.1], [-1.0, 0.3, 1.3]], requires_grad=True)
    logvar = torch.zeros(2, 3, requires_grad=True)
    # per-item KL = ½ μ²: dim 0 -> 0.5, 0.5 (batch mean 0.5); dim 1 -> 0.005, 0.045 (mean
    # 0.025); dim 2 -> 0.005, 0.845 (mean 0.425). Floor 0.25 on the batch means:
    kl, raw = L.kl_divergence(mu, logvar, free_bits=0.25)
    assert kl.item() == pytest.approx(0.5 + 0.25 + 0.425)  # dim 1 counts exactly 0.25
    assert raw.item() == pytest.approx(0.5 + 0.025 + 0.425)  # raw = mean_b Σ_d
    kl.backward()
    # d/dμ mean_b ½μ² = μ/B on unclamped dims; exactly zero on the clamped dim 1. Dim 2 keeps
    # its gradient on item 0 too: the floor applies to the batch mean, not per item.
    assert mu.grad[:, 0].tolist() == pytest.approx([0.5, -0.5])
    assert mu.grad[:, 1].tolist() == [0.0, 0.0]
    assert mu.grad[:, 2].tolist() == pytest.approx([0.05, 0.65])
    assert logvar.grad[:, 1].tolist() == [0.0, 0.0]
    # a floor below every dimension's KL changes nothing
    kl_low, _ = L.kl_divergence(mu, logvar, free_bits=0.001)
    assert kl_low.item() == pytest.approx(raw.item())


def test_sparsity_hand_value_and_gradient():
    pred = t4([[1.0, 2.0], [0.0, 50.0]]).requires_grad_()
    # threshold 1, temperature 0.1: σ(0) = 0.5, σ(10) + σ(−10) = 1 -> soft wet 1.5 / 3 = 0.5
    loss = L.sparsity(pred, MASK, target_wet=0.75, wet_threshold=1.0, temperature=0.1)
    assert loss.item() == pytest.approx(0.25, rel=1e-6)
    loss.backward()
    # the hard count (pred > threshold).mean() has no gradient; the soft one does
    assert pred.grad[0, 0, 0, 0] != 0 and pred.grad[0, 0, 1, 1] == 0
    assert torch.isfinite(pred.grad).all()
