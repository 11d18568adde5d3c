"""Ensemble losses: brute force, Gaussian closed forms, bias, gradients, pooling, spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from downpour.losses.ensemble import (
    almost_fair_crps,
    ensemble_mean,
    pooled_crps,
    spectral_crps,
)
from downpour.metrics.ensemble import crps_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHAS = (0.0, 0.95, 1.0)


# ---------------------------------------------------------------- references


def brute_crps(x: np.ndarray, y: float, alpha: float) -> float:
    """The pair form of Lang et al. (2024), a double loop over members, float64."""
    m = len(x)
    eps = (1.0 - alpha) / m
    total = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                total += abs(x[i] - y) + abs(x[j] - y) - (1.0 - eps) * abs(x[i] - x[j])
    return total / (2.0 * m * (m - 1))


def brute_map(members: np.ndarray, truth: np.ndarray, valid: np.ndarray, alpha: float):
    """Per-cell score, a loop over cells; NaN at invalid cells."""
    b, _, h, w = members.shape
    out = np.full((b, h, w), np.nan)
    for i in range(b):
        for r in range(h):
            for c in range(w):
                if valid[i, r, c]:
                    out[i, r, c] = brute_crps(members[i, :, r, c], truth[i, r, c], alpha)
    return out


def brute_mean(score: np.ndarray, valid: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Per item weighted mean over valid cells, then mean over items with any (0 if none)."""
    per_item = []
    for i in range(score.shape[0]):
        w = np.ones(score.shape[1:]) if weights is None else weights
        sel = valid[i] & (w > 0)
        if sel.any():
            per_item.append(np.sum(w[sel] * score[i][sel]) / np.sum(w[sel]))
    return float(np.mean(per_item)) if per_item else 0.0


def brute_pooled(
    members: np.ndarray, truth: np.ndarray, valid: np.ndarray, s: int, alpha: float
) -> float:
    """Loop over ``s × s`` blocks (partial edge blocks kept), block means of valid cells."""
    b, m, h, w = members.shape
    per_item = []
    for i in range(b):
        scores = []
        for r0 in range(0, h, s):
            for c0 in range(0, w, s):
                sel = valid[i, r0 : r0 + s, c0 : c0 + s]
                if not sel.any():
                    continue
                xs = [members[i, k, r0 : r0 + s, c0 : c0 + s][sel].mean() for k in range(m)]
                y = truth[i, r0 : r0 + s, c0 : c0 + s][sel].mean()
                scores.append(brute_crps(np.array(xs), y, alpha))
        if scores:
            per_item.append(np.mean(scores))
    return float(np.mean(per_item))


def gaussian_crps(mu: float, sigma: float, y: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma²) at y (Gneiting et al. 2005)."""
    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def t64(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def random_case(seed: int, b: int = 3, m: int = 5, h: int = 4, w: int = 6):
    rng = np.random.default_rng(seed)
    members = rng.gamma(0.8, 4.0, size=(b, m, h, w)) * (rng.random((b, m, h, w)) > 0.3)
    truth = rng.gamma(0.8, 4.0, size=(b, h, w)) * (rng.random((b, h, w)) > 0.3)
    return members, truth, rng


def mask_for(kind: str, rng: np.random.Generator, b: int, h: int, w: int) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "hw":
        mask = rng.random((h, w)) > 0.3
        mask[0, 0] = True
        return mask
    mask = rng.random((b, h, w)) > 0.3
    mask[0, 0, 0] = True
    mask[-1] = False  # an item without any valid cell drops out of the mean
    return mask


# ---------------------------------------------------------------- the per-cell score


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("mask_kind", ["none", "hw", "bhw"])
def test_matches_brute_force(alpha, mask_kind):
    members, truth, rng = random_case(1)
    b, _, h, w = members.shape
    mask = mask_for(mask_kind, rng, b, h, w)
    valid = np.ones((b, h, w), bool) if mask is None else np.broadcast_to(mask, (b, h, w))
    # garbage in masked cells must not leak into the score
    members = np.where(valid[:, None], members, np.nan)
    truth = np.where(valid, truth, np.nan)
    expected_map = brute_map(members, truth, valid, alpha)
    tmask = None if mask is None else torch.from_numpy(mask)

    got_map = almost_fair_crps(t64(members), t64(truth), tmask, alpha=alpha, reduction="none")
    assert got_map.shape == (b, h, w)
    np.testing.assert_allclose(got_map.numpy()[valid], expected_map[valid], rtol=1e-12, atol=1e-12)
    assert (got_map.numpy()[~valid] == 0).all()

    got = almost_fair_crps(t64(members), t64(truth), tmask, alpha=alpha)
    assert got.ndim == 0
    assert float(got) == pytest.approx(brute_mean(expected_map, valid), rel=1e-12)


def test_weights_and_truth_with_channel_axis_match_brute_force():
    members, truth, rng = random_case(2)
    b, _, h, w = members.shape
    mask = mask_for("hw", rng, b, h, w)
    weights = rng.random((h, w)) + 0.1
    weights[1, :] = 0.0  # zero-weight cells count for nothing
    valid = np.broadcast_to(mask, (b, h, w))
    expected = brute_mean(brute_map(members, truth, valid, 0.95), valid, weights)
    got = almost_fair_crps(
        t64(members),
        t64(truth)[:, None],
        torch.from_numpy(mask)[None, None],
        weights=t64(weights),
    )
    assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_is_alpha_mixture_of_the_metric_estimators(alpha):
    # afCRPS_α = α·fair + (1 − α)·ecdf, with the verification module's estimators
    members, truth, _ = random_case(3, m=4)
    fair = crps_ensemble(truth, members, member_axis=1, estimator="fair")
    ecdf = crps_ensemble(truth, members, member_axis=1, estimator="ecdf")
    got = almost_fair_crps(t64(members), t64(truth), alpha=alpha, reduction="none").numpy()
    np.testing.assert_allclose(got, alpha * fair + (1 - alpha) * ecdf, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_matches_scoringrules(alpha):
    sr = pytest.importorskip("scoringrules")
    members, truth, _ = random_case(4, m=6)
    # scoringrules: "fair" is the fair estimator, "nrg" (energy form) the ECDF one
    fair = np.asarray(sr.crps_ensemble(truth, members, m_axis=1, estimator="fair", backend="numpy"))
    ecdf = np.asarray(sr.crps_ensemble(truth, members, m_axis=1, estimator="nrg", backend="numpy"))
    got = almost_fair_crps(t64(members), t64(truth), alpha=alpha, reduction="none").numpy()
    np.testing.assert_allclose(got, alpha * fair + (1 - alpha) * ecdf, rtol=1e-10, atol=1e-12)


def test_nonnegative_and_zero_cases():
    members, truth, _ = random_case(5)
    for alpha in ALPHAS:
        assert (
            almost_fair_crps(t64(members), t64(truth), alpha=alpha, reduction="none") >= 0
        ).all()
    # every member equals the truth: 0 for every alpha
    same = t64(np.repeat(truth[:, None], 5, axis=1))
    for alpha in ALPHAS:
        assert float(almost_fair_crps(same, t64(truth), alpha=alpha)) == 0.0
    # the fair score's degeneracy: two members bracketing the truth score 0
    pair = torch.tensor([[[[0.0]], [[10.0]]]], dtype=torch.float64)
    y = torch.tensor([[[3.0]]], dtype=torch.float64)
    assert float(almost_fair_crps(pair, y, alpha=1.0)) == 0.0
    assert float(almost_fair_crps(pair, y, alpha=0.95)) > 0.0


# ---------------------------------------------------------------- closed forms and bias


def test_fair_score_of_large_gaussian_ensemble_approaches_closed_form():
    # R independent cells per truth value, M members each from N(mu, sigma²). The fair
    # score is unbiased, so each cell's estimate has mean CRPS(N(mu, sigma²), y) and the
    # mean of R cells has standard error sd/√R (sd measured over the R cells, about
    # sigma·0.6/√M here). A tolerance of 4 standard errors: a wrong formula (e.g. the ECDF
    # one or a missing factor 2) is off by far more, a correct one fails with p < 1e-4.
    mu, sigma, m, r = 1.5, 2.0, 2000, 64
    zs = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    rng = np.random.default_rng(6)
    members = rng.normal(mu, sigma, size=(1, m, len(zs), r))
    truth = np.broadcast_to((mu + sigma * zs)[None, :, None], (1, len(zs), r))
    score = almost_fair_crps(t64(members), t64(truth), alpha=1.0, reduction="none").numpy()[0]
    expected = gaussian_crps(mu, sigma, mu + sigma * zs)
    se = score.std(axis=1, ddof=1) / math.sqrt(r)
    assert (se < 0.02).all()
    assert np.all(np.abs(score.mean(axis=1) - expected) < 4 * se)


def test_fair_is_unbiased_and_ecdf_biased_for_four_members():
    # M = 4 members from the truth's own distribution N(0, 1), n draws per truth value:
    # E[fair] = CRPS(N(0,1), y); E[ecdf] = CRPS + E|X − X'|/(2M) = CRPS + 1/(M√π).
    m, n = 4, 100_000
    ys = np.array([-1.5, 0.0, 0.7, 2.0])
    rng = np.random.default_rng(7)
    members = t64(rng.standard_normal((1, m, len(ys), n)))
    truth = t64(np.broadcast_to(ys[None, :, None], (1, len(ys), n)))
    expected = gaussian_crps(0.0, 1.0, ys)
    bias = 1.0 / (m * math.sqrt(math.pi))  # 0.141
    for alpha, expected_bias in ((1.0, 0.0), (0.0, bias)):
        s = almost_fair_crps(members, truth, alpha=alpha, reduction="none").numpy()[0]
        se = s.std(axis=1, ddof=1) / math.sqrt(n)
        assert np.all(np.abs(s.mean(axis=1) - expected - expected_bias) < 4 * se)
    ecdf = almost_fair_crps(members, truth, alpha=0.0, reduction="none").numpy()[0]
    assert np.all(ecdf.mean(axis=1) - expected > 0.1)  # biased upwards, clearly


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("spread", [0.5, 1.0, 1.5])
def test_expected_score_of_gaussian_ensemble_with_wrong_spread(alpha, spread):
    # truth ~ N(0, 1), M = 4 members ~ N(0, s²): E[afCRPS_α] = (√(2(1+s²)) − (1−ε)s)/√π,
    # ε = (1 − α)/M (module docstring); the standard error is measured over the n cells.
    m, n = 4, 200_000
    rng = np.random.default_rng(8)
    truth = t64(rng.standard_normal((1, 1, n)))
    members = t64(spread * rng.standard_normal((1, m, 1, n)))
    s = almost_fair_crps(members, truth, alpha=alpha, reduction="none").numpy().ravel()
    eps = (1 - alpha) / m
    expected = (math.sqrt(2 * (1 + spread**2)) - (1 - eps) * spread) / math.sqrt(math.pi)
    assert abs(s.mean() - expected) < 4 * s.std(ddof=1) / math.sqrt(n)


@pytest.mark.parametrize("alpha", [0.95, 1.0])
def test_calibrated_ensemble_beats_under_dispersive_and_shifted(alpha):
    m, n = 4, 20_000
    rng = np.random.default_rng(9)
    truth = t64(rng.standard_normal((1, 1, n)))

    def score(members: np.ndarray) -> float:
        return float(almost_fair_crps(t64(members), truth, alpha=alpha))

    calibrated = score(rng.standard_normal((1, m, 1, n)))
    collapsed = score(np.zeros((1, m, 1, n)))  # every member at the truth's median
    shifted = score(1.0 + rng.standard_normal((1, m, 1, n)))
    over = score(2.0 * rng.standard_normal((1, m, 1, n)))
    assert calibrated == pytest.approx(1 / math.sqrt(math.pi), abs=0.02)
    assert calibrated < collapsed - 0.1
    assert calibrated < shifted - 0.1
    assert calibrated < over - 0.05


# ---------------------------------------------------------------- gradients and masks


def test_gradients_reach_every_member_and_skip_masked_cells():
    members, truth, rng = random_case(10, b=2, m=4)
    members = members + rng.random(members.shape)  # no ties
    b, _, h, w = members.shape
    mask = rng.random((b, h, w)) > 0.3
    mask[:, 0, 0] = True
    members = np.where(mask[:, None], members, np.nan)
    truth = np.where(mask, truth, np.nan)
    x = t64(members).requires_grad_(True)
    loss = almost_fair_crps(x, t64(truth), torch.from_numpy(mask))
    assert torch.isfinite(loss)
    loss.backward()
    grad = x.grad.numpy()
    assert np.isfinite(grad).all()
    valid = np.broadcast_to(mask[:, None], grad.shape)
    assert (grad[~valid] == 0).all()
    assert (grad[valid] != 0).all()


def test_fair_score_gives_no_gradient_to_outermost_members():
    # d/dx of the lowest member below y (or the highest above) is −ε/M (+ε/M), 0 for α = 1
    for alpha in (1.0, 0.95):
        x = torch.tensor([-3.0, -1.0, 0.5, 2.0], dtype=torch.float64).reshape(1, 4, 1, 1)
        x.requires_grad_(True)
        almost_fair_crps(x, torch.ones(1, 1, 1, dtype=torch.float64), alpha=alpha).backward()
        eps = (1 - alpha) / 4
        assert float(x.grad[0, 0]) == pytest.approx(-eps / 4, abs=1e-15)
        assert float(x.grad[0, 3]) == pytest.approx(eps / 4, abs=1e-15)
        assert float(x.grad[0, 1]) != 0.0


def test_all_masked_batch_gives_finite_zero():
    x = torch.full((2, 3, 4, 4), float("nan"), requires_grad=True)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    for loss in (
        almost_fair_crps(x, torch.zeros(2, 4, 4), mask),
        pooled_crps(x, torch.zeros(2, 4, 4), mask, scales=(2,))[2],
        spectral_crps(x, torch.zeros(2, 4, 4), mask),
    ):
        assert float(loss.detach()) == 0.0
        (grad,) = torch.autograd.grad(loss, x)
        assert (grad == 0).all()


def test_half_precision_is_promoted():
    x = torch.rand(1, 2, 3, 3).to(torch.bfloat16)
    assert almost_fair_crps(x, torch.rand(1, 3, 3)).dtype == torch.float32


@pytest.mark.parametrize(
    ("members", "truth", "kwargs", "match"),
    [
        (torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2), {}, "at least 2 members"),
        (torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2), {"alpha": 1.5}, "alpha"),
        (torch.zeros(1, 2, 2, 2), torch.zeros(2, 2, 2), {}, "truth"),
        (torch.zeros(2, 2), torch.zeros(2, 2), {}, r"\(B, M, H, W\)"),
        (
            torch.zeros(1, 2, 2, 2),
            torch.zeros(1, 2, 2),
            {"mask": torch.ones(3, 3, dtype=bool)},
            "mask",
        ),
        (torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2), {"reduction": "sum"}, "reduction"),
    ],
)
def test_bad_arguments_raise(members, truth, kwargs, match):
    with pytest.raises(ValueError, match=match):
        almost_fair_crps(members, truth, **kwargs)


# ---------------------------------------------------------------- pooled


def _hand_example():
    nan = float("nan")
    # three 2×2 blocks: A (all valid), B (two valid cells), C (none valid)
    m1 = [[0, 2, 4, 100, 7, 7], [1, 1, 100, 6, 7, 7]]  # block means A 1, B 5
    m2 = [[2, 4, 5, nan, 1, 1], [3, 3, nan, 5, 1, 1]]  # block means A 3, B 5
    y = [[1, 2, 8, nan, nan, nan], [3, 2, nan, 10, nan, nan]]  # block means A 2, B 9
    mask = [[1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 0]]
    members = torch.tensor([[m1, m2]], dtype=torch.float64)
    return members, torch.tensor([y], dtype=torch.float64), torch.tensor(mask, dtype=torch.bool)


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        # A: members 1, 3, truth 2: skill 1, ΣΣ|xi−xj| = 4, ε = (1−α)/2:
        #    1 − (1−ε)·4/(2·2·1) = ε, i.e. 0.025 (α = 0.95), 0 (α = 1), 0.5 (α = 0)
        # B: members 5, 5, truth 9: 4 for every α;  C: left out
        (0.95, (0.025 + 4.0) / 2),
        (1.0, 2.0),
        (0.0, 2.25),
    ],
)
def test_pooled_hand_value(alpha, expected):
    members, truth, mask = _hand_example()
    x = members.clone().requires_grad_(True)
    got = pooled_crps(x, truth, mask, scales=(2,), alpha=alpha)
    assert list(got) == [2]
    assert float(got[2].detach()) == pytest.approx(expected, rel=1e-12)
    (grad,) = torch.autograd.grad(got[2], x)
    assert torch.isfinite(grad).all()
    assert (grad[:, :, ~mask] == 0).all()


def test_pooled_partial_blocks_match_brute_force():
    members, truth, rng = random_case(11, b=2, m=4, h=5, w=7)
    mask = rng.random((2, 5, 7)) > 0.4
    mask[:, 0, 0] = True
    got = pooled_crps(t64(members), t64(truth), torch.from_numpy(mask), scales=(1, 2, 3, 12))
    assert list(got) == [1, 2, 3, 12]
    for s, value in got.items():
        assert float(value) == pytest.approx(brute_pooled(members, truth, mask, s, 0.95), rel=1e-12)
    per_cell = almost_fair_crps(t64(members), t64(truth), torch.from_numpy(mask))
    assert float(got[1]) == pytest.approx(float(per_cell), rel=1e-12)


# ---------------------------------------------------------------- spectral


def test_spectral_zero_when_members_equal_truth_positive_otherwise():
    rng = np.random.default_rng(12)
    truth = rng.gamma(0.5, 5.0, size=(2, 12, 16))
    mask = rng.random((12, 16)) > 0.2
    members = np.repeat(truth[:, None], 4, axis=1)
    members[:, :, ~mask] = np.nan  # masked cells are zeroed before the FFT
    tmask = torch.from_numpy(mask)
    for alpha in ALPHAS:
        assert float(spectral_crps(t64(members), t64(truth), tmask, alpha=alpha)) == 0.0
    noisy = members + rng.normal(0.0, 0.5, size=members.shape)
    x = t64(noisy).requires_grad_(True)
    loss = spectral_crps(x, t64(truth), tmask)
    assert float(loss.detach()) > 0.0
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all()
    assert (grad[:, :, ~tmask] == 0).all()
    assert (grad[:, :, tmask] != 0).any()


def test_spectral_prefers_members_with_the_truths_small_scale_texture():
    # truth and textured members: white noise; smooth members: the same noise blurred
    g = torch.Generator().manual_seed(13)
    truth = torch.rand(4, 32, 32, generator=g, dtype=torch.float64)
    textured = torch.rand(4, 4, 32, 32, generator=g, dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool2d(textured, 5, stride=1, padding=2)
    assert float(spectral_crps(textured, truth)) < 0.5 * float(spectral_crps(smooth, truth))


def test_spectral_all_dry_fields_are_finite():
    x = torch.zeros(2, 4, 6, 10, requires_grad=True)
    loss = spectral_crps(x, torch.zeros(2, 6, 10))
    assert float(loss.detach()) == 0.0
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all()


# ---------------------------------------------------------------- ensemble mean


def test_ensemble_mean_layout_and_gradient():
    x = torch.arange(12.0).reshape(1, 3, 2, 2).requires_grad_(True)
    mean = ensemble_mean(x)
    assert mean.shape == (1, 1, 2, 2)
    assert mean.flatten().tolist() == [4.0, 5.0, 6.0, 7.0]
    assert ensemble_mean(x, keepdim=False).shape == (1, 2, 2)
    (grad,) = torch.autograd.grad(mean.sum(), x)
    assert torch.allclose(grad, torch.full_like(x, 1 / 3))


@pytest.mark.parametrize("scale", [0, 2.5])
def test_pooled_bad_scale_raises(scale):
    with pytest.raises(ValueError, match="scales"):
        pooled_crps(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4), scales=(scale,))
