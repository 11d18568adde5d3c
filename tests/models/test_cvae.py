"""The cVAE: shapes for every option, heads, priors, where y and z may reach ŷ, sampling, size."""

from __future__ import annotations

import io
import itertools

import pytest
import torch

from downpour.config import Config, ModelConfig, load_config
from downpour.core.errors import DownpourError
from downpour.models import CVAE, MODELS, build_model
from downpour.models.cvae import level_sizes

B = 2
TINY = {"d_z": 4, "base_filters": 4, "d_x": 8, "d_y": 8}
ALL_ON = {"skips": True, "attention": True, "res_blocks": True}
HEADS = ["relu", "softplus", "hurdle"]
PRIORS = ["standard", "conditional"]
INJECTIONS = ["every", "first", "first_two", "none"]
ON_OFF = [False, True]

# Parameter counts at 156×132 with 2 predictor and 4 static channels, scale 12.
# A deliberate change of the architecture changes these numbers; update them then.
EXPECTED_COUNTS = {
    "cvae_v1_baseline": 5_739_201,
    "cvae_v3_phase2": 18_987_263,
    "cvae_v4_phase3": 18_980_351,
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make(
    shape: tuple[int, int] = (24, 24),
    scale: int = 6,
    *,
    x_channels: int = 2,
    s_channels: int = 3,
    **options: object,
) -> tuple[CVAE, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A model and inputs (x, s, y) on ``shape``."""
    cfg = ModelConfig(**{**TINY, **options})
    net = CVAE(cfg, x_channels=x_channels, s_channels=s_channels, shape=shape, scale_factor=scale)
    h, w = shape[0] // scale, shape[1] // scale
    x = torch.randn(B, x_channels, h, w)
    s = torch.randn(B, s_channels, *shape)
    y = torch.log1p(torch.rand(B, 1, *shape) * 50)
    return net, x, s, y


def sharpen_hurdle(net: CVAE) -> None:
    """Spread the wet logits so that both wet and dry pixels occur."""
    with torch.no_grad():
        net.decoder.head.conv.weight.mul_(50)


def assert_output_valid(out, net: CVAE, shape: tuple[int, int]) -> None:
    d_z = net.cfg.d_z
    assert out.y_hat.shape == (B, 1, *shape)
    for name in ("mu", "logvar", "prior_mu", "prior_logvar", "z"):
        assert getattr(out, name).shape == (B, d_z), name
    assert (out.y_hat >= 0).all()
    assert torch.isfinite(out.y_hat).all()
    if net.cfg.head == "hurdle":
        assert out.p_wet.shape == out.intensity.shape == (B, 1, *shape)
        assert ((out.p_wet > 0) & (out.p_wet < 1)).all()
        assert (out.intensity > 0).all()
    else:
        assert out.p_wet is None and out.intensity is None


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize(
    ("head", "prior", "injection", "skips", "attention", "res_blocks"),
    list(itertools.product(HEADS, PRIORS, INJECTIONS, ON_OFF, ON_OFF, ON_OFF)),
)
def test_shapes_every_option(head, prior, injection, skips, attention, res_blocks):
    net, x, s, y = make(
        head=head,
        prior=prior,
        injection=injection,
        skips=skips,
        attention=attention,
        res_blocks=res_blocks,
    )
    out = net(x, s, y)
    assert_output_valid(out, net, (24, 24))
    out.y_hat.sum().backward()
    net.eval()
    assert_output_valid(net(x, s, mode="prior"), net, (24, 24))


@pytest.mark.parametrize(
    ("shape", "scale"), [((30, 30), 5), ((30, 30), 6), ((48, 36), 12), ((156, 132), 12)]
)
@pytest.mark.parametrize(
    "options",
    [{**ALL_ON, "head": "hurdle", "prior": "conditional", "injection": "first_two"}, {}],
    ids=["all-on", "plain"],
)
def test_shapes_other_grids(shape, scale, options):
    net, x, s, y = make(shape, scale, **options)
    assert_output_valid(net(x, s, y), net, shape)
    net.eval()
    assert_output_valid(net(x, s, mode="prior"), net, shape)


def test_level_sizes_and_seed():
    assert level_sizes((156, 132)) == [(156, 132), (78, 66), (39, 33), (20, 17)]
    assert level_sizes((30, 30)) == [(30, 30), (15, 15), (8, 8), (4, 4)]
    net, *_ = make((156, 132), 12, **ALL_ON)
    assert net.decoder.seed_size == (10, 9)  # ceil(156 / 16), ceil(132 / 16)
    assert [f.shape[-2:] for f in net.encode_condition(*make((156, 132), 12)[1:3])[1]] == [
        torch.Size(s) for s in level_sizes((156, 132))
    ]


# ---------------------------------------------------------------------------- hurdle
def test_hurdle_eval_zeroes_dry_pixels_exactly():
    net, x, s, y = make(head="hurdle", **ALL_ON)
    sharpen_hurdle(net)
    net.eval()
    out = net(x, s, y)
    dry = out.p_wet < 0.5
    assert dry.any() and (~dry).any()
    assert (out.y_hat[dry] == 0).all()
    assert torch.equal(out.y_hat[~dry], out.intensity[~dry])


def test_hurdle_train_is_probability_times_intensity():
    net, x, s, y = make(head="hurdle", **ALL_ON)
    sharpen_hurdle(net)
    out = net(x, s, y)
    torch.testing.assert_close(out.y_hat, out.p_wet * out.intensity, rtol=0, atol=0)
    assert (out.y_hat > 0).all()  # smooth while training: no exact zeros


def test_hurdle_samples_have_exact_zeros():
    net, x, s, _ = make(head="hurdle", prior="conditional", **ALL_ON)
    sharpen_hurdle(net)
    samples = net.sample(x, s, 3)
    assert (samples == 0).any() and (samples > 0).any()


# ---------------------------------------------------------------------------- priors
def test_conditional_prior_starts_standard_and_is_used_in_prior_mode():
    net, x, s, _ = make(prior="conditional")
    out = net(x, s, mode="prior")
    assert torch.equal(out.prior_mu, torch.zeros(B, 4))  # last layer zero-initialised
    with torch.no_grad():
        for p in net.prior_net.parameters():
            p.normal_()
    out = net(x, s, mode="prior", temperature=1e-6)
    assert out.prior_mu.abs().max() > 0.1
    torch.testing.assert_close(out.z, out.prior_mu, rtol=0, atol=1e-4)
    assert torch.equal(out.mu, out.prior_mu) and torch.equal(out.logvar, out.prior_logvar)
    assert (out.prior_logvar.abs() <= 10).all()


@pytest.mark.parametrize("mode", ["posterior", "prior"])
def test_standard_prior_is_zero(mode):
    net, x, s, y = make(prior="standard")
    out = net(x, s, y, mode=mode)
    assert torch.equal(out.prior_mu, torch.zeros(B, 4))
    assert torch.equal(out.prior_logvar, torch.zeros(B, 4))


@pytest.mark.parametrize("prior", PRIORS)
def test_posterior_depends_on_y_prior_does_not(prior):
    net, x, s, y = make(prior=prior, head="softplus", **ALL_ON)  # relu may be all 0 at init
    net.eval()
    y2 = torch.log1p(torch.rand_like(y) * 200)
    a, b = net(x, s, y, temperature=0.0), net(x, s, y2, temperature=0.0)
    assert not torch.allclose(a.mu, b.mu)
    assert not torch.allclose(a.y_hat, b.y_hat)
    outs = []
    for target in (y, y2, None):
        torch.manual_seed(5)
        outs.append(net(x, s, target, mode="prior"))
    for other in outs[1:]:
        assert torch.equal(outs[0].y_hat, other.y_hat)
        assert torch.equal(outs[0].z, other.z)


def test_temperature_zero_gives_the_mean():
    net, x, s, y = make()
    out = net(x, s, y, temperature=0.0)
    assert torch.equal(out.z, out.mu)
    assert (out.logvar.abs() <= 10).all()


# ------------------------------------------------------------ where y and z reach ŷ
@pytest.mark.parametrize("skips", ON_OFF)
def test_y_reaches_output_only_through_z(skips):
    net, x, s, y = make(skips=skips, head="softplus", attention=True, res_blocks=True)
    y.requires_grad_(True)
    # posterior mode with z drawn from q: gradient flows from ŷ to y through z
    (g,) = torch.autograd.grad(net(x, s, y).y_hat.sum(), y, allow_unused=True)
    assert g is not None and g.abs().sum() > 0
    # with z given, or in prior mode, ŷ does not depend on y at all
    for out in (net(x, s, y, z=torch.randn(B, 4)), net(x, s, y, mode="prior")):
        (g,) = torch.autograd.grad(out.y_hat.sum(), y, allow_unused=True)
        assert g is None or g.abs().sum() == 0


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / (a.norm() + b.norm()).detach() * 2)


@pytest.mark.parametrize("injection", INJECTIONS)
def test_z_changes_the_output(injection):
    net, x, s, y = make(injection=injection, head="softplus", **ALL_ON)
    net.eval()
    a = net(x, s, y, z=torch.randn(B, 4)).y_hat
    b = net(x, s, y, z=torch.randn(B, 4)).y_hat
    assert relative_difference(a, b) > 1e-3


@pytest.mark.parametrize("injection", INJECTIONS)
def test_z_changes_both_hurdle_outputs(injection):
    # ŷ itself may be all dry at init in eval mode; z must move p_wet and intensity
    net, x, s, y = make(injection=injection, head="hurdle", **ALL_ON)
    net.eval()
    a = net(x, s, y, z=torch.randn(B, 4))
    b = net(x, s, y, z=torch.randn(B, 4))
    assert relative_difference(a.p_wet, b.p_wet) > 1e-3
    assert relative_difference(a.intensity, b.intensity) > 1e-3


def test_eval_forward_is_deterministic_with_fixed_z():
    net, x, s, y = make(head="hurdle", prior="conditional", dropout=0.5, **ALL_ON)
    net.eval()
    z = torch.randn(B, 4)
    a, b = net(x, s, y, z=z), net(x, s, mode="prior", z=z)
    assert torch.equal(a.y_hat, b.y_hat) and torch.equal(a.z, z)


# --------------------------------------------------------------------------- sample
def test_sample_shapes_seeds_and_one_decoder_call():
    net, x, s, y = make(prior="conditional", head="softplus", **ALL_ON)
    calls = []
    net.decoder.register_forward_hook(lambda *_: calls.append(1))
    net.train()
    a = net.sample(x, s, 5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (B, 5, 24, 24) and a.dtype == torch.float32
    assert len(calls) == 1
    assert net.training  # mode restored
    b = net.sample(x, s, 5, generator=torch.Generator().manual_seed(1))
    c = net.sample(x, s, 5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a[:, 0], a[:, 1])  # members differ
    post = net.sample(x, s, 2, mode="posterior", y=y, temperature=0.0)
    assert torch.equal(post[:, 0], post[:, 1])  # temperature 0: every member is the mean
    assert not a.requires_grad


def test_sample_matches_forward_member_by_member():
    net, x, s, _ = make(prior="conditional", head="softplus", **ALL_ON)
    net.eval()
    gen = torch.Generator().manual_seed(3)
    samples = net.sample(x, s, 3, generator=gen)
    eps = torch.randn(B * 3, 4, generator=torch.Generator().manual_seed(3))
    h_x, _ = net.encode_condition(x, s)
    mu, logvar = net.prior(h_x)
    for j in range(3):
        z = mu + torch.exp(0.5 * logvar) * eps[j::3]
        torch.testing.assert_close(net(x, s, mode="prior", z=z).y_hat[:, 0], samples[:, j])


@pytest.mark.parametrize("wet_rule", ["threshold", "bernoulli", "calibrated"])
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_chunked_sampling_equals_one_call(chunk, wet_rule):
    net, x, s, y = make(prior="conditional", head="hurdle", **ALL_ON)
    sharpen_hurdle(net)
    calls = []
    net.decoder.register_forward_hook(lambda *_: calls.append(1))
    kw = {"mode": "posterior", "y": y, "wet_rule": wet_rule}
    whole = net.sample(x, s, 5, generator=torch.Generator().manual_seed(4), **kw)
    calls.clear()
    parts = net.sample(x, s, 5, generator=torch.Generator().manual_seed(4), chunk=chunk, **kw)
    assert len(calls) == -(-B * 5 // chunk)  # ceil(B·n / chunk) decoder calls
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
    assert torch.equal(parts == 0, whole == 0)  # the same dry cells


def test_chunk_must_be_positive():
    net, x, s, _ = make()
    with pytest.raises(ValueError, match="chunk must be ≥ 1"):
        net.sample(x, s, 2, chunk=0)


# ------------------------------------------------------------------- precision, format
def test_bf16_autocast_and_channels_last():
    net, x, s, y = make(head="hurdle", prior="conditional", **ALL_ON)
    net = net.to(memory_format=torch.channels_last)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (x, s, y)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(*cl)
    assert out.y_hat.dtype == torch.bfloat16
    assert out.mu.dtype == out.logvar.dtype == out.prior_mu.dtype == torch.float32
    assert_output_valid(out, net, (24, 24))
    out.y_hat.float().sum().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net.sample(*cl[:2], 2).shape == (B, 2, 24, 24)


def test_state_dict_round_trip():
    net, x, s, y = make(head="hurdle", prior="conditional", **ALL_ON)
    net(x, s, y)  # move the batch-norm statistics
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    twin, *_ = make(head="hurdle", prior="conditional", **ALL_ON)
    twin.load_state_dict(torch.load(buf, weights_only=True))
    net.eval()
    twin.eval()
    z = torch.randn(B, 4)
    assert torch.equal(net(x, s, y, z=z).y_hat, twin(x, s, y, z=z).y_hat)


# ---------------------------------------------------------------------------- errors
def test_bad_inputs_raise():
    net, x, s, y = make()
    with pytest.raises(ValueError, match="needs the target y"):
        net(x, s)
    with pytest.raises(ValueError, match="mode must be"):
        net(x, s, y, mode="prio")
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2, 4, 4\)"):
        net(torch.randn(B, 2, 5, 4), s, y)
    with pytest.raises(ValueError, match="s must have shape"):
        net(x, s[:, :2], y)
    with pytest.raises(ValueError, match="y must have shape"):
        net(x, s, y[..., :-1])
    with pytest.raises(ValueError, match="z must have shape"):
        net(x, s, y, z=torch.randn(B, 5))
    with pytest.raises(ValueError, match="must divide the grid"):
        make((25, 24), 6)


def test_registry_builds_by_name():
    cfg = Config(model=ModelConfig(**TINY))
    info = {"x_channels": 1, "s_channels": 0, "shape": [8, 8], "scale_factor": 2}
    net = build_model("cvae", cfg, info)
    assert isinstance(net, CVAE) and "cvae" in MODELS
    assert MODELS.names() == ["cvae", "nowcast", "srdrn"]
    net.eval()  # batch norm cannot train on one sample whose deepest level is 1×1
    assert net(torch.randn(1, 1, 4, 4), torch.randn(1, 0, 8, 8), mode="prior").y_hat.shape == (
        1,
        1,
        8,
        8,
    )
    with pytest.raises(DownpourError, match="unknown model 'cvea'; valid names: cvae"):
        build_model("cvea", cfg, info)


# ------------------------------------------------------------------------------ size
def test_parameter_counts():
    counts = {}
    for name in EXPECTED_COUNTS:
        cfg = load_config(name).model
        net = CVAE(cfg, x_channels=2, s_channels=4, shape=(156, 132), scale_factor=12)
        counts[name] = net.count_parameters()
        assert counts[name] == sum(p.numel() for p in net.parameters())
        print(f"{name}: {counts[name]:,} parameters")
    assert counts["cvae_v3_phase2"] < 30_000_000
    assert counts == EXPECTED_COUNTS


def test_wet_cells_rules():
    from downpour.models.cvae import wet_cells

    p = torch.tensor([[0.9, 0.6, 0.45], [0.4, 0.3, 0.1]]).reshape(1, 1, 2, 3)
    # threshold: p >= 0.5
    assert wet_cells(p, "threshold").reshape(-1).tolist() == [True, True, False] + [False] * 3
    # calibrated: sum p = 2.75 -> the 3 most likely cells
    cal = wet_cells(p, "calibrated").reshape(-1).tolist()
    assert cal == [True, True, True, False, False, False]
    # over a mask: sum over the valid cells 0.9 + 0.4 + 0.3 = 1.6 -> 2 cells, never outside
    mask = torch.tensor([[True, False, False], [True, True, False]])
    cal = wet_cells(p, "calibrated", mask=mask).reshape(-1).tolist()
    assert cal == [True, False, False, True, False, False]
    # all-dry expectation gives no wet cell
    assert not wet_cells(torch.full((1, 1, 2, 2), 0.1), "calibrated").any()
    # bernoulli: the wet share matches p
    g = torch.Generator().manual_seed(0)
    draws = wet_cells(torch.full((200, 1, 10, 10), 0.3), "bernoulli", generator=g)
    assert draws.float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_calibrated_members_have_their_expected_wet_area():
    cfg = ModelConfig(d_z=4, base_filters=4, d_x=8, d_y=8, head="hurdle", prior="conditional")
    torch.manual_seed(0)
    net = CVAE(cfg, x_channels=2, s_channels=3, shape=(24, 24), scale_factor=6)
    x, s = torch.randn(2, 2, 4, 4), torch.randn(2, 3, 24, 24)
    g = torch.Generator().manual_seed(1)
    out = net.sample(x, s, 3, wet_rule="calibrated", generator=g)
    g = torch.Generator().manual_seed(1)
    net.eval()
    h_x, skips = net.encode_condition(x, s)
    mu, logvar, _, _ = net._latent_params(h_x, "prior", None, s)
    mu, logvar = mu.repeat_interleave(3, 0), logvar.repeat_interleave(3, 0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    _, p_wet, _ = net.decoder(
        z, h_x.repeat_interleave(3, 0), [f.repeat_interleave(3, 0) for f in skips],
        x.repeat_interleave(3, 0),
    )  # fmt: skip
    expected = torch.round(p_wet.reshape(6, -1).sum(1))
    wet = (out.reshape(6, -1) > 0).sum(1).float()
    assert torch.equal(wet, expected)
