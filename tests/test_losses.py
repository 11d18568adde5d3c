from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

import downpour.losses as L
import downpour.losses.cvae as LC
from downpour.config import LossConfig
from downpour.models.outputs import CVAEOutput


def t4(rows: list[list[float]]) -> torch.Tensor:
    """A (1, 1, H, W) float tensor."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def m4(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)[None, None]


# 2×2 mask that excludes the bottom-right cell (an "ocean" cell)
MASK = m4([[1, 1], [1, 0]])
PLAIN = {"scale": 1.0, "w_min": 1.0, "w_max": 1.0, "tail_threshold": 1e9, "tail_boost": 1.0}


# ------------------------------------------------------------- weighted reconstruction


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


# ------------------------------------------------------------------------------ mass


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


# -------------------------------------------------------------------------------- KL


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


# ------------------------------------------------------------------------- sparsity


def test_sparsity_hand_value_and_gradient():
    pred = t4([[1.0, 2.0], [0.0, 50.0]]).requires_grad_()
    # threshold 1, temperature 0.1: σ(0) = 0.5, σ(10) + σ(−10) = 1 -> soft wet 1.5 / 3 = 0.5
    loss = L.sparsity(pred, MASK, target_wet=0.75, wet_threshold=1.0, temperature=0.1)
    assert loss.item() == pytest.approx(0.25, rel=1e-6)
    loss.backward()
    # the hard count (pred > threshold).mean() has no gradient; the soft one does
    assert pred.grad[0, 0, 0, 0] != 0 and pred.grad[0, 0, 1, 1] == 0
    assert torch.isfinite(pred.grad).all()


# ----------------------------------------------------------------------- multi-scale


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


# -------------------------------------------------------------------------- gradient


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


# ----------------------------------------------------------------------------- focal


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


# ---------------------------------------------------------------------------- hurdle


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


# -------------------------------------------------------------------------- spectral


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


# -------------------------------------------------------------------------- cvae_loss

B, D, H, W = 3, 4, 6, 5
WEIGHTED = {
    "mass": "lambda_mass",
    "sparse": "lambda_sparse",
    "multiscale": "lambda_multiscale",
    "grad": "lambda_grad",
    "focal": "lambda_focal",
    "spectral": "lambda_spectral",
    "hurdle": "lambda_hurdle",
}
FUNCS = {
    "mass": "mass_conservation",
    "sparse": "sparsity",
    "multiscale": "multiscale_reconstruction",
    "grad": "gradient_loss",
    "focal": "extreme_focal",
    "spectral": "spectral_loss",
    "hurdle": "hurdle_loss",
}


def _all_on() -> LossConfig:
    return LossConfig(
        lambda_mass=0.005,
        free_bits=0.05,
        lambda_sparse=0.01,
        lambda_multiscale=0.1,
        lambda_grad=0.05,
        lambda_focal=1.0,
        dry_weight=2.0,
        lambda_hurdle=1.0,
        lambda_spectral=0.3,
    )


def _output(
    seed: int = 0, dry: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[CVAEOutput, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, s: float = 1.0) -> torch.Tensor:
        return (torch.rand(*shape, generator=g) * s).to(dtype).requires_grad_()

    y_hat, intensity = r(B, 1, H, W, s=4.0), r(B, 1, H, W, s=4.0)
    p_wet = (torch.rand(B, 1, H, W, generator=g) * 0.98 + 0.01).to(dtype).requires_grad_()
    y = torch.rand(B, 1, H, W, generator=g) * 4.0
    y = torch.where(y > 1.0, y, torch.zeros(()))
    if dry:
        y = torch.zeros_like(y)
        with torch.no_grad():
            y_hat.zero_()
            intensity.zero_()
    mu, logvar = r(B, D), r(B, D)
    prior_mu, prior_logvar = r(B, D), r(B, D)
    out = CVAEOutput(
        y_hat=y_hat,
        mu=mu,
        logvar=logvar,
        prior_mu=prior_mu,
        prior_logvar=prior_logvar,
        z=mu.detach(),
        p_wet=p_wet,
        intensity=intensity,
    )
    mask = torch.ones(B, 1, H, W, dtype=torch.bool)
    mask[:, :, 0, :2] = False
    mask[-1] = False  # last item has no valid cell
    return out, y, mask


def test_cvae_total_is_weighted_sum_of_terms():
    cfg = _all_on()
    out, y, mask = _output()
    total, terms = L.cvae_loss(out, y, mask, cfg, beta=0.02, tail_threshold=20.0, head="hurdle")
    assert set(terms) == {"recon", "kl", "kl_raw", "total", "bce", "intensity", *WEIGHTED}
    expected = (
        terms["recon"]
        + 0.02 * terms["kl"]
        + sum(getattr(cfg, WEIGHTED[k]) * terms[k] for k in WEIGHTED)
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["total"] is total
    assert terms["hurdle"].item() == pytest.approx((terms["bce"] + terms["intensity"]).item())
    assert all(v.item() > 0 for k, v in terms.items())  # every term is live on this batch
    # pieces agree with the single-term functions in mm/day
    pred, true = torch.expm1(out.y_hat), torch.expm1(y)
    assert terms["grad"].item() == pytest.approx(L.gradient_loss(pred, true, mask).item())
    kl, raw = L.kl_divergence(out.mu, out.logvar, out.prior_mu, out.prior_logvar, free_bits=0.05)
    assert (terms["kl"].item(), terms["kl_raw"].item()) == (kl.item(), raw.item())


def test_cvae_zero_weight_terms_are_not_computed():
    cfg = LossConfig(
        lambda_mass=0.0,
        lambda_sparse=0.0,
        lambda_multiscale=0.0,
        lambda_grad=0.0,
        lambda_focal=0.0,
        lambda_spectral=0.0,
        lambda_hurdle=0.0,
    )
    out, y, mask = _output()
    mocks = {k: mock.patch.object(LC, f, wraps=getattr(L, f)) for k, f in FUNCS.items()}
    spies = {k: p.start() for k, p in mocks.items()}
    try:
        total, terms = L.cvae_loss(out, y, mask, cfg, beta=0.0, tail_threshold=20.0, head="hurdle")
    finally:
        mock.patch.stopall()
    assert all(not s.called for s in spies.values())
    for k in (*WEIGHTED, "bce", "intensity"):
        assert terms[k].item() == 0.0
    assert terms["kl_raw"].item() > 0  # KL still logged during warm-up (beta = 0)
    assert total.item() == pytest.approx(terms["recon"].item())


def test_cvae_nonzero_weights_call_each_term_once():
    out, y, mask = _output()
    with mock.patch.object(LC, "gradient_loss", wraps=L.gradient_loss) as spy:
        L.cvae_loss(out, y, mask, _all_on(), beta=0.01, tail_threshold=20.0, head="relu")
    spy.assert_called_once()
    assert spy.call_args.kwargs == {"variant": "signed"}


def test_cvae_non_hurdle_head_has_no_hurdle_terms_and_head_errors():
    out, y, mask = _output()
    _, terms = L.cvae_loss(out, y, mask, _all_on(), beta=0.01, tail_threshold=20.0, head="relu")
    assert not {"hurdle", "bce", "intensity"} & set(terms)
    with pytest.raises(ValueError, match="head"):
        L.cvae_loss(out, y, mask, _all_on(), beta=0.01, tail_threshold=20.0, head="sigmoid")
    out.p_wet = None
    with pytest.raises(ValueError, match="p_wet"):
        L.cvae_loss(out, y, mask, _all_on(), beta=0.01, tail_threshold=20.0, head="hurdle")


def test_cvae_all_dry_batch_finite_values_and_gradients():
    out, y, mask = _output(dry=True)
    cfg = _all_on().model_copy(update={"grad_variant": "magnitude"})
    total, terms = L.cvae_loss(out, y, mask, cfg, beta=0.01, tail_threshold=20.0, head="hurdle")
    leaves = [
        out.y_hat,
        out.intensity,
        out.p_wet,
        out.mu,
        out.logvar,
        out.prior_mu,
        out.prior_logvar,
    ]
    for name, term in terms.items():
        assert torch.isfinite(term), name
        if term.requires_grad:
            for g in torch.autograd.grad(term, leaves, retain_graph=True, allow_unused=True):
                assert g is None or torch.isfinite(g).all(), name
    total.backward()
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves)
    assert out.y_hat.grad.abs().sum() > 0  # sparsity/hurdle still push a dry field


def test_cvae_bf16_autocast_close_to_fp32():
    cfg = _all_on()
    out32, y, mask = _output(seed=3)
    _, ref = L.cvae_loss(out32, y, mask, cfg, beta=0.01, tail_threshold=10.0, head="hurdle")
    out16, _, _ = _output(seed=3, dtype=torch.bfloat16)  # as a bf16 network would return it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, terms = L.cvae_loss(
            out16, y, mask, cfg, beta=0.01, tail_threshold=10.0, head="hurdle"
        )
    assert total.dtype == torch.float32
    total.backward()
    assert torch.isfinite(out16.y_hat.grad.float()).all()
    for k, v in terms.items():
        assert torch.isfinite(v), k
        assert v.item() == pytest.approx(ref[k].item(), rel=2e-2, abs=1e-3), k
