"""Quantile heads and residual mode of SRDRN: monotone heads, gradients, bicubic identity."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from downpour.config import Config, SRDRNConfig, load_config
from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.models.baselines import bicubic
from downpour.models.registry import build_model
from downpour.models.srdrn import LOG1P_MAX, RAIN_MAX, SRDRN, median_head, residual_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

TAUS = [0.5, 0.95, 0.99, 0.999]
SMALL = {"filters": 4, "res_blocks": 1, "upsample_filters": 4}
NORM = Normalization(
    channels=("q", "pr"),
    x_log1p=(False, True),
    x_mean=(100.0, 0.8),
    x_std=(10.0, 0.9),
    y_mean=0.5,
    y_std=1.0,
)


def info(norm: Normalization = NORM, **extra) -> dict:
    """Store facts of a 2-channel store at scale 6 (precipitation is channel 1)."""
    precip = [i for i, log in enumerate(norm.x_log1p) if log]
    return {
        "x_channels": 2,
        "scale_factor": 6,
        "normalization": norm.to_dict(),
        "precip_channels": precip,
        **extra,
    }


def reference_forward(net: SRDRN, x: torch.Tensor) -> torch.Tensor:
    """The deterministic SRDRN's forward pass as published (before quantile heads existed)."""
    h = net.head(x)
    u = net.out(net.upsample(h + net.trunk(h))).float()
    if net.output == "linear":
        return F.relu(u)
    return torch.expm1(u.clamp(0.0, LOG1P_MAX))


def scramble(net: torch.nn.Module, scale: float, gen: torch.Generator) -> None:
    """Give every parameter and batch-norm statistic random values of magnitude ``scale``."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
        for name, b in net.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) * scale + 1e-3)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * scale)


# ------------------------------------------------------------ deterministic


@pytest.mark.parametrize("output", ["linear", "log1p"])
def test_no_quantiles_is_todays_network_bit_for_bit(output):
    torch.manual_seed(3)
    net = SRDRN(in_channels=2, scale_factor=6, output=output, **SMALL)
    assert net.out.out_channels == 1 and net.quantiles == () and net.n_heads == 1
    x = torch.randn(4, 2, 3, 2) * 2
    for mode in (net.train, net.eval):
        mode()
        with torch.no_grad():
            assert torch.equal(net(x), reference_forward(net, x))
    # the same state dict as before: a deterministic checkpoint loads unchanged
    cfg = Config(srdrn=SRDRNConfig(output=output, **SMALL))
    again = build_model("srdrn", cfg, {"x_channels": 2, "scale_factor": 6})
    again.load_state_dict(net.state_dict())
    assert set(again.state_dict()) == set(net.state_dict())


# -------------------------------------------------------------- monotonicity


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("w_scale", "x_scale"), [(1.0, 1.0), (5.0, 30.0), (30.0, 1e3)])
@pytest.mark.parametrize("residual", ["none", "bicubic"])
def test_heads_never_decrease_and_never_go_negative(seed, w_scale, x_scale, residual):
    gen = torch.Generator().manual_seed(seed)
    kwargs = {"normalization": NORM, "precip_channel": 1} if residual == "bicubic" else {}
    net = SRDRN(in_channels=2, scale_factor=6, quantiles=TAUS, residual=residual, **SMALL, **kwargs)
    scramble(net, w_scale, gen)
    x = torch.randn(3, 2, 3, 2, generator=gen) * x_scale
    for mode in (net.train, net.eval):
        mode()
        with torch.no_grad():
            q = net(x)
        assert q.shape == (3, 4, 18, 12)
        assert not torch.isnan(q).any()
        assert (q >= 0).all()
        assert (q[:, 1:] >= q[:, :-1]).all()


@pytest.mark.parametrize("output", ["linear", "log1p"])
def test_heads_are_increments_over_the_lowest_head(output):
    net = SRDRN(in_channels=2, scale_factor=2, quantiles=[0.1, 0.5, 0.9], output=output, **SMALL)
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.copy_(torch.tensor([1.5, -2.0, 40.0]))
    q = net(torch.randn(2, 2, 3, 3))
    first = 1.5 if output == "linear" else math.expm1(1.5)
    expected = [first, first + math.log1p(math.exp(-2.0)), first + math.log1p(math.exp(-2.0)) + 40]
    for k, value in enumerate(expected):
        torch.testing.assert_close(q[:, k], torch.full((2, 6, 6), value), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- gradients


@pytest.mark.parametrize("bias", [0.0, -30.0])
@pytest.mark.parametrize("residual", ["none", "bicubic"])
def test_every_head_gets_a_gradient_even_with_a_tiny_increment(bias, residual):
    torch.manual_seed(0)
    kwargs = {"normalization": NORM, "precip_channel": 1} if residual == "bicubic" else {}
    net = SRDRN(in_channels=2, scale_factor=2, quantiles=TAUS, residual=residual, **SMALL, **kwargs)
    with torch.no_grad():
        net.out.weight.mul_(1e-3)
        net.out.bias.copy_(torch.tensor([1.0, bias, bias, bias]))  # q_1 > 0: relu passes
    q = net(torch.randn(2, 2, 3, 3))
    if bias:
        increments = q[:, 1:] - q[:, :-1]
        assert float(increments.detach().max()) < 1e-12  # softplus(-30) ≈ 9e-14
    for k in range(len(TAUS)):  # each head's own loss reaches its own kernel and bias
        net.zero_grad()
        q = net(torch.randn(2, 2, 3, 3))
        q[:, k].sum().backward()
        assert float(net.out.bias.grad[k].abs()) > 0, k
        assert float(net.out.weight.grad[k].abs().sum()) > 0, k
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


# ------------------------------------------------------------------ residual


def test_residual_with_a_zero_last_conv_is_bicubic_exactly():
    gen = torch.Generator().manual_seed(1)
    raw = torch.zeros(5, 2, 3, 2)  # physical predictors: q, and rain in mm/day (some dry)
    raw[:, 0] = 100 + 10 * torch.randn(5, 3, 2, generator=gen)
    raw[:, 1] = torch.relu(torch.randn(5, 3, 2, generator=gen) * 20)
    x = NORM.normalize_x(raw)
    rain = NORM.denormalize_x(x)[:, 1].clamp(0, RAIN_MAX)
    expected = bicubic(rain, 6)[:, None]  # the bicubic baseline of the channel, mm/day
    assert (expected > 0).any() and (expected == 0).any() and expected.shape == (5, 1, 18, 12)
    cfg = Config(srdrn=SRDRNConfig(residual="bicubic", **SMALL))
    det = build_model("srdrn", cfg, info())
    qcfg = Config(srdrn=SRDRNConfig(residual="bicubic", quantiles=TAUS, **SMALL))
    quant = build_model("srdrn", qcfg, info())
    for net in (det, quant):
        scramble(net, 3.0, gen)  # any trunk: the correction is zero
        with torch.no_grad():
            net.out.weight.zero_()
            net.out.bias.zero_()
            got = net.eval()(x)
        assert torch.equal(got[:, :1], expected)
        assert torch.equal(net.interpolated(x), expected)
    increments = torch.diff(got, dim=1)  # the upper heads add softplus(0) = log 2 each
    torch.testing.assert_close(increments, torch.full_like(increments, math.log(2.0)))
    # physical units: the store's precipitation itself, interpolated, not its z-score
    np.testing.assert_allclose(
        expected[:, 0].numpy(), bicubic(raw[:, 1].numpy(), 6), rtol=1e-5, atol=1e-4
    )


def test_residual_interpolation_stays_finite_for_absurd_inputs():
    net = SRDRN(
        in_channels=2, scale_factor=2, residual="bicubic", normalization=NORM, precip_channel=1,
        **SMALL,
    )  # fmt: skip
    x = torch.tensor([1e3, -1e3, 0.0, 5.0]).repeat(1, 2, 2, 1)  # e^900 mm/day and below 0
    b = net.interpolated(x)
    assert torch.isfinite(b).all() and (b >= 0).all() and float(b.max()) <= 1.3 * RAIN_MAX


def test_residual_finds_the_precipitation_channel_in_the_store_facts():
    facts = info()
    del facts["precip_channels"]  # derived from the normalisation when absent
    got = residual_inputs(facts)
    assert got["precip_channel"] == 1 and got["normalization"] == NORM


def test_residual_without_a_precipitation_predictor_is_an_error():
    no_precip = Normalization(
        channels=("q", "t"), x_log1p=(False, False), x_mean=(0, 0), x_std=(1, 1), y_mean=0, y_std=1
    )
    cfg = Config(srdrn=SRDRNConfig(residual="bicubic", **SMALL))
    with pytest.raises(DownpourError, match=r"srdrn.residual=bicubic .* no precipitation channel"):
        build_model("srdrn", cfg, info(no_precip))
    with pytest.raises(DownpourError, match=r"srdrn.residual=bicubic needs the store's norm"):
        build_model("srdrn", cfg, {"x_channels": 2, "scale_factor": 6})
    # residual none needs none of it
    build_model("srdrn", Config(srdrn=SRDRNConfig(**SMALL)), {"x_channels": 2, "scale_factor": 6})


# --------------------------------------------------------- config and rules


@pytest.mark.parametrize(
    ("taus", "message"),
    [
        ([0.5, 0.5], "strictly increasing"),
        ([0.9, 0.5], "strictly increasing"),
        ([0.0, 0.5], "strictly between 0 and 1"),
        ([0.5, 1.0], "strictly between 0 and 1"),
        ([float("nan")], "strictly between 0 and 1"),
    ],
)
def test_quantile_levels_are_validated(taus, message):
    text = "[" + ",".join("nan" if t != t else str(t) for t in taus) + "]"
    with pytest.raises(DownpourError, match=rf"srdrn.quantiles.*{message}"):
        load_config("demo", [f"srdrn.quantiles={text}"])
    with pytest.raises(ValueError, match="strictly increasing in \\(0, 1\\)"):
        SRDRN(in_channels=1, scale_factor=2, quantiles=taus, **SMALL)


def test_residual_needs_the_linear_output():
    with pytest.raises(DownpourError, match="srdrn.residual=bicubic .* srdrn.output=linear"):
        load_config("demo", ["srdrn.residual=bicubic", "srdrn.output=log1p"])


@pytest.mark.parametrize(
    ("taus", "index"),
    [([], 0), ([0.5], 0), (TAUS, 0), ([0.1, 0.5, 0.9], 1), ([0.4, 0.6], 0), ([0.05, 0.3, 0.9], 1)],
)
def test_median_head_is_the_level_closest_to_one_half(taus, index):
    assert median_head(taus) == index


def test_presets_keep_the_deterministic_network_and_qsrdrn_has_four_heads():
    for name, residual in (("srdrn", "none"), ("demo", "bicubic")):
        s = load_config(name).srdrn
        assert (s.quantiles, s.residual, s.synthetic_heads) == ([], residual, "median")
    q, base = load_config("qsrdrn"), load_config("srdrn")
    assert q.name == "qsrdrn" and q.srdrn.quantiles == TAUS
    same = {k for k in SRDRNConfig.model_fields if k not in ("quantiles", "pipeline_quantiles")}
    assert {k: getattr(q.srdrn, k) for k in same} == {k: getattr(base.srdrn, k) for k in same}
    net = build_model("srdrn", q, {"x_channels": 2, "scale_factor": 12})
    assert net.count_parameters() == 2_556_097 + 3 * (9 * 256 + 1)
    # the main job trains quantile variants beside the deterministic ones; a quantile preset not
    assert load_config("demo").srdrn.pipeline_quantiles == TAUS
    assert q.srdrn.pipeline_quantiles == []
    qd, demo = load_config("qsrdrn_demo"), load_config("demo")
    assert qd.srdrn.quantiles == TAUS and qd.srdrn.pipeline_quantiles == []
    assert {k: getattr(qd.srdrn, k) for k in same} == {k: getattr(demo.srdrn, k) for k in same}
    plain = load_config("qsrdrn_demo", ["srdrn.residual=none"])  # residual mode adds no weights
    net = build_model("srdrn", plain, {"x_channels": 2, "scale_factor": 12})
    assert net.count_parameters() == 45_073 + 3 * (9 * 32 + 1)  # demo: 45,073 with one head
