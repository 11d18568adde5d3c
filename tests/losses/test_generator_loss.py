"""The generator's ensemble objective against brute-force references and proper-score orderings."""

import itertools

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from downpour.config import LossConfig
from downpour.losses import ensemble_loss
from downpour.losses.reconstruction import mass_conservation


def _brute_crps(members: np.ndarray, truth: np.ndarray, alpha: float) -> np.ndarray:
    """Almost-fair CRPS per cell from its pair definition: (B, M, H, W), (B, H, W) → (B, H, W)."""
    m = members.shape[1]
    eps = (1 - alpha) / m
    total = np.zeros(truth.shape)
    for i, j in itertools.permutations(range(m), 2):
        xi, xj = members[:, i], members[:, j]
        total += np.abs(xi - truth) + np.abs(xj - truth) - (1 - eps) * np.abs(xi - xj)
    return total / (2 * m * (m - 1))


def _block_mean(a: np.ndarray, s: int) -> np.ndarray:
    *lead, h, w = a.shape
    return a.reshape(*lead, h // s, s, w // s, s).mean(axis=(-3, -1))


def test_total_is_the_per_cell_and_pooled_crps_from_their_definitions():
    rng = np.random.default_rng(0)
    members = rng.gamma(0.8, 1.0, (2, 3, 4, 6))
    truth = rng.gamma(0.8, 1.0, (2, 4, 6))
    cfg = LossConfig(objective="ensemble", crps_alpha=0.9, crps_scales=[2], lambda_pooled=0.5,
                     lambda_mass=0.0)  # fmt: skip
    mask = torch.ones(1, 1, 4, 6, dtype=torch.bool)
    total, terms = ensemble_loss(torch.tensor(members), torch.tensor(truth)[:, None], mask, cfg,
                                 tail_threshold=30.0)  # fmt: skip
    cell = _brute_crps(members, truth, 0.9).mean()
    pooled = _brute_crps(_block_mean(members, 2), _block_mean(truth, 2), 0.9).mean()
    assert float(terms["crps"]) == pytest.approx(cell, rel=1e-6)
    assert float(terms["crps_pool2"]) == pytest.approx(pooled, rel=1e-6)
    assert float(total) == pytest.approx(cell + 0.5 * pooled, rel=1e-6)
    expected_spread = members.std(axis=1, ddof=1).mean()
    assert float(terms["spread"]) == pytest.approx(expected_spread, rel=1e-5)


def test_masked_cells_do_not_count_and_mass_acts_on_the_ensemble_mean():
    rng = np.random.default_rng(1)
    members = torch.tensor(rng.gamma(0.8, 1.0, (2, 4, 4, 4)), dtype=torch.float32)
    truth = torch.tensor(rng.gamma(0.8, 1.0, (2, 1, 4, 4)), dtype=torch.float32)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2, :] = True
    cfg = LossConfig(objective="ensemble", crps_scales=[], lambda_mass=2.0)
    garbage = members.clone()
    garbage[:, :, 2:, :] = 1e6  # outside the mask
    total, terms = ensemble_loss(garbage, truth, mask, cfg, tail_threshold=30.0)
    _, clean = ensemble_loss(members[..., :2, :], truth[..., :2, :], mask[..., :2, :], cfg,
                             tail_threshold=30.0)  # fmt: skip
    assert float(terms["crps"]) == pytest.approx(float(clean["crps"]), rel=1e-6)
    mean_mm = torch.expm1(members).mean(dim=1, keepdim=True)
    mass = mass_conservation(mean_mm, torch.expm1(truth), mask.expand_as(truth))
    assert float(terms["mass"]) == pytest.approx(float(mass), rel=1e-6)
    assert float(total) == pytest.approx(float(terms["crps"]) + 2.0 * float(mass), rel=1e-6)


def test_an_ensemble_drawn_like_the_truth_beats_a_shifted_or_under_dispersive_one():
    # truth ~ N(0, 1) per cell (shifted to stay positive like log1p rain); three ensembles
    g = torch.Generator().manual_seed(0)
    truth = 3.0 + torch.randn(64, 1, 16, 16, generator=g)
    noise = torch.randn(64, 4, 16, 16, generator=g)
    cfg = LossConfig(objective="ensemble", crps_scales=[4], lambda_mass=0.0)
    mask = torch.ones(1, 1, 16, 16, dtype=torch.bool)

    def score(members: torch.Tensor) -> float:
        return float(ensemble_loss(members, truth, mask, cfg, tail_threshold=30.0)[0])

    calibrated = score(3.0 + noise)
    assert calibrated < score(3.5 + noise)  # shifted
    assert calibrated < score(3.0 + 0.3 * noise)  # under-dispersive
    assert calibrated < score(3.0 + 0.0 * noise)  # one field repeated (a point forecast)
    # and the per-cell term is close to its closed form for N(0, 1) members:
    # E afCRPS = (√(2(1 + s²)) − (1 − ε)s)/√π with s = 1, ε = (1 − α)/M
    eps = 0.05 / 4
    closed = (np.sqrt(4.0) - (1 - eps)) / np.sqrt(np.pi)
    per_cell = ensemble_loss(3.0 + noise, truth, mask, cfg, tail_threshold=30.0)[1]["crps"]
    assert float(per_cell) == pytest.approx(closed, rel=0.03)


def test_members_must_be_an_ensemble():
    cfg = LossConfig(objective="ensemble")
    with pytest.raises(ValueError, match="M ≥ 2"):
        one = torch.ones(1, 1, 4, 4, dtype=torch.bool)
        ensemble_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), one, cfg, tail_threshold=1)


def test_config_refuses_elbo_terms_under_the_ensemble_objective():
    with pytest.raises(ValidationError, match="loss.beta_kl"):
        LossConfig(objective="ensemble", beta_kl=0.02)
    with pytest.raises(ValidationError, match="block sizes"):
        LossConfig(objective="ensemble", crps_scales=[1, 4])
    # defaults of the ELBO terms are not an error: only what the user set
    assert LossConfig(objective="ensemble").beta_kl > 0
