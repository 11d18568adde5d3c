"""cvae_loss: the weighted sum of its terms, computed only when weighted."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

import downpour.losses as L
import downpour.losses.cvae as LC
from downpour.config import LossConfig
from downpour.models.outputs import CVAEOutput

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
