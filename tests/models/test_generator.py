"""The ensemble generator (model.arch=lowres): members, noise, heads, residual mode, sampling."""

import math

import pytest
import torch
from pydantic import ValidationError

from downpour.config import Config, ModelConfig, load_config
from downpour.data.normalize import Normalization
from downpour.models import build_model
from downpour.models.baselines import bicubic
from downpour.models.cvae import CVAE
from downpour.models.generator import LowResGenerator

SHAPE, SCALE = (24, 18), 6


def _net(**kw) -> LowResGenerator:
    torch.manual_seed(0)
    opts = {"arch": "lowres", "d_z": 4, "base_filters": 4, "d_x": 8, "prior": "conditional"}
    return LowResGenerator(
        ModelConfig(**{**opts, **kw}), x_channels=2, s_channels=3, shape=SHAPE, scale_factor=SCALE
    )


def _inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 2, 4, 3, generator=g), torch.randn(b, 3, *SHAPE, generator=g)


def test_the_registry_builds_the_generator_for_arch_lowres():
    info = {"x_channels": 2, "s_channels": 3, "shape": list(SHAPE), "scale_factor": SCALE}
    net = build_model("cvae", Config(model=ModelConfig(arch="lowres", base_filters=4)), info)
    assert isinstance(net, LowResGenerator)
    assert net.sizes == [(8, 6), (24, 18)]  # ×2 then ×3: the stages land on the target grid
    assert isinstance(build_model("cvae", Config(model=ModelConfig(base_filters=4)), info), CVAE)


def test_members_of_one_input_differ_and_gradients_reach_every_part():
    net = _net(head="softplus")
    x, s = _inputs()
    m = net.members(x, s, 3)
    assert m.shape == (2, 3, *SHAPE)
    # noise maps make the members of one input different fields, cell by cell
    assert float((m[:, 0] - m[:, 1]).detach().abs().mean()) > 1e-3
    m.mean().backward()
    for name in ("trunk.0.0.weight", "stages.0.fuse.0.weight", "head.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_sampling_is_reproducible_and_does_not_depend_on_the_chunk():
    net = _net(head="hurdle")
    x, s = _inputs()
    draw = [
        net.sample(x, s, 5, generator=torch.Generator().manual_seed(7), chunk=c)
        for c in (None, 3, 1)
    ]
    # the same draws; convolutions of other batch sizes round differently (~1e-7)
    for d in draw[1:]:
        assert torch.equal(d > 0, draw[0] > 0)
        assert torch.allclose(d, draw[0], atol=1e-5, rtol=0)
    other = net.sample(x, s, 5, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(draw[0], other)


def test_posterior_mode_is_refused_with_the_fix():
    net = _net()
    x, s = _inputs()
    with pytest.raises(ValueError, match="sampling.mode=prior"):
        net.sample(x, s, 2, mode="posterior", y=torch.zeros(2, 1, *SHAPE))


def _zero_head(net: LowResGenerator, bias: tuple[float, ...]) -> None:
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor(bias))


def test_hurdle_head_draws_exact_zeros_with_the_wet_probability():
    # a head that ignores its features: p_wet = sigmoid(logit(0.3)) everywhere,
    # intensity = softplus(1) + 1e-4; a Bernoulli draw per cell and member
    net = _net(head="hurdle")
    _zero_head(net, (math.log(0.3 / 0.7), 1.0))
    x, s = _inputs(4)
    out = net.sample(x, s, 25, generator=torch.Generator().manual_seed(3), wet_rule="bernoulli")
    wet = out > 0
    n = wet.numel()
    # binomial: mean 0.3, sd sqrt(0.21 / n); 5 sd
    assert abs(float(wet.float().mean()) - 0.3) < 5 * math.sqrt(0.21 / n)
    intensity = math.log1p(math.exp(1.0)) + 1e-4
    assert torch.allclose(out[wet], torch.full_like(out[wet], intensity))
    assert torch.equal(out[~wet], torch.zeros_like(out[~wet]))
    # training members use the same draw, so dry cells are exact zeros there too
    m = net.members(x, s, 4)
    assert abs(float((m > 0).float().mean()) - 0.3) < 5 * math.sqrt(0.21 / m.numel())
    assert torch.equal(m[m <= 0], torch.zeros_like(m[m <= 0]))
    # calibrated: exactly round(Σ p_wet) wet cells per member (p_wet varying in space)
    with torch.no_grad():
        net.head.weight.normal_(0.0, 1.0)
    net.eval()
    cal = net.sample(x, s, 2, generator=torch.Generator().manual_seed(3), wet_rule="calibrated")
    cond = net.condition(x, s)
    g = torch.Generator().manual_seed(3)
    rows, z, noise, _ = net._draw(cond, 2, temperature=1.0, generator=g, wet_rule="calibrated")
    _, p_wet, _ = net.decode(cond, rows, z, noise)
    expected = torch.round(p_wet.flatten(1).sum(-1)).reshape(4, 2)
    expected = expected.detach()
    assert 0 < float(expected.min()) and float(expected.max()) < SHAPE[0] * SHAPE[1]
    assert torch.equal((cal > 0).flatten(2).sum(-1).to(expected.dtype), expected)


def test_residual_mode_starts_from_the_bicubic_field():
    # x channel 0 is log1p-normalised rain: rain = expm1(x · 2 + 1)
    norm = Normalization(
        channels=("pr", "q"), x_log1p=(True, False), x_mean=(1.0, 0.0), x_std=(2.0, 1.0),
        y_mean=0.0, y_std=1.0,
    )  # fmt: skip
    cfg = ModelConfig(arch="lowres", d_z=4, base_filters=4, d_x=8, residual="bicubic")
    net = LowResGenerator(cfg, x_channels=2, s_channels=3, shape=SHAPE, scale_factor=SCALE,
                          normalization=norm, precip_channel=0)  # fmt: skip
    _zero_head(net, (0.0,))  # zero correction
    x, s = _inputs()
    rain = torch.expm1(x[:, :1] * 2.0 + 1.0).clamp_min(0.0)  # negative rain is read as 0
    expected = torch.log1p(bicubic(rain, SCALE))
    out = net.sample(x, s, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, expected.expand_as(out), atol=1e-6)


def test_noise_maps_are_the_only_variability_when_z_is_fixed():
    net = _net(prior="standard")
    net.eval()
    x, s = _inputs(1)
    cond = net.condition(x, s)
    rows = torch.zeros(2, dtype=torch.long)
    z = torch.zeros(2, 4)
    same = net.noise(1, generator=torch.Generator().manual_seed(0))
    noise_same = [torch.cat([e, e]) for e in same]
    a, _, _ = net.decode(cond, rows, z, noise_same)
    assert torch.equal(a[0], a[1])
    b, _, _ = net.decode(cond, rows, z, net.noise(2, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(b[0], b[1])


def test_config_refuses_options_of_the_other_architecture():
    with pytest.raises(ValidationError, match="model.skips=false"):
        ModelConfig(arch="lowres", skips=True)
    with pytest.raises(ValidationError, match="model.arch=lowres"):
        ModelConfig(residual="bicubic")


def test_the_widest_layers_act_on_the_low_res_grid():
    # at the v3 width (base 96) the generator stays far below the 30 M parameters
    # the issue allows and below the pyramid cVAE at the same width
    info = {"x_channels": 2, "s_channels": 4, "shape": [156, 132], "scale_factor": 12}
    wide = {"base_filters": 96, "d_z": 128, "d_x": 96, "res_blocks": True, "attention": True}
    gen = build_model("cvae", Config(model=ModelConfig(arch="lowres", **wide)), info)
    pyr = build_model("cvae", Config(model=ModelConfig(skips=True, d_y=384, **wide)), info)
    assert gen.count_parameters() < 30_000_000
    assert gen.count_parameters() < pyr.count_parameters()
    # channels per stage: 4·base at 13×11, then 2·base, base, base
    assert [st.fuse[0].out_channels for st in gen.stages] == [192, 96, 96]


def test_demo_generator_parameter_count():
    # the demo preset's generator (arch lowres, base 16): by hand, trunk 4·16 = 64 channels
    info = {"x_channels": 2, "s_channels": 4, "shape": [156, 132], "scale_factor": 12}
    net = build_model("cvae", load_config("demo"), info)
    assert isinstance(net, LowResGenerator)
    assert net.count_parameters() == 64_497


def test_the_pyramid_cvae_draws_prior_members_for_the_ensemble_objective():
    torch.manual_seed(0)
    cfg = ModelConfig(d_z=4, base_filters=4, d_x=8, d_y=8, prior="conditional", head="softplus")
    net = CVAE(cfg, x_channels=2, s_channels=3, shape=SHAPE, scale_factor=SCALE)
    x, s = _inputs()
    m = net.members(x, s, 3)
    assert m.shape == (2, 3, *SHAPE)
    # members of one input differ only through z: fixing the draw fixes the member
    assert float((m[:, 0] - m[:, 1]).detach().abs().mean()) > 1e-4
    m.mean().backward()
    assert float(net.prior_net.net[-1].weight.grad.abs().sum()) > 0  # the prior learns
    assert net.enc_y.levels[0].conv[0].weight.grad is None  # no target encoder in prior draws
    hurdle = CVAE(cfg.model_copy(update={"head": "hurdle"}), x_channels=2, s_channels=3,
                  shape=SHAPE, scale_factor=SCALE)  # fmt: skip
    with pytest.raises(ValueError, match="model.arch=lowres"):
        hurdle.members(x, s, 2)
