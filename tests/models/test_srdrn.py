"""The SRDRN network: upsampling stages, parameter count, shapes, head, registry."""

import math

import pytest
import torch

from downpour.config import Config, SRDRNConfig
from downpour.core.errors import DownpourError
from downpour.models.registry import MODELS, build_model
from downpour.models.srdrn import LOG1P_MAX, SRDRN, upsample_factors


def expected_parameters(c, f, r, u, k, factors):
    """The parameter count of the docstring's formula."""
    n = (c * k * k + 1) * f + f  # input conv + PReLU
    n += r * (2 * (k * k * f * f + f) + 4 * f + f)  # residual blocks
    n += (k * k * f * f + f) + 2 * f  # post-block conv + BN
    width = f
    for _ in factors:
        n += k * k * width * u + u + u  # conv + PReLU
        width = u
    return n + k * k * width + 1  # output conv


@pytest.mark.parametrize(
    ("scale", "factors"),
    [
        (1, []),
        (2, [2]),
        (3, [3]),
        (4, [2, 2]),
        (6, [2, 3]),
        (8, [2, 2, 2]),
        (9, [3, 3]),
        (12, [2, 3, 2]),
        (18, [2, 3, 3]),
        (24, [2, 3, 2, 2]),
        (36, [2, 3, 2, 3]),
        (5, [5]),
        (7, [7]),
        (10, [2, 5]),
        (35, [5, 7]),
    ],
)
def test_upsample_factor_table(scale, factors):
    assert upsample_factors(scale) == factors
    assert math.prod(factors) == scale


@pytest.mark.parametrize("scale", [5, 7, 14])
def test_published_only_refuses_other_primes(scale):
    with pytest.raises(DownpourError, match=rf"data.scale_factor={scale} .*2s and 3s"):
        upsample_factors(scale, published_only=True)
    assert upsample_factors(12, published_only=True) == [2, 3, 2]


@pytest.mark.parametrize("scale", [0, -3, 2.5])
def test_invalid_scale_factor(scale):
    with pytest.raises(DownpourError, match="data.scale_factor must be an integer"):
        upsample_factors(scale)


def test_paper_size_parameter_count():
    net = SRDRN(in_channels=2, scale_factor=12)  # 64 filters, 16 blocks, 256-wide stages
    assert net.factors == [2, 3, 2]
    assert net.count_parameters() == expected_parameters(2, 64, 16, 256, 3, [2, 3, 2])
    assert net.count_parameters() == 2_556_097


@pytest.mark.parametrize(
    ("kwargs", "factors"),
    [
        ({"filters": 8, "res_blocks": 2, "upsample_filters": 16, "kernel_size": 5}, [5]),
        ({"filters": 4, "res_blocks": 0, "upsample_filters": 6, "kernel_size": 1}, [2, 3]),
    ],
)
def test_parameter_count_follows_the_formula(kwargs, factors):
    net = SRDRN(in_channels=3, upsample=factors, **kwargs)
    k, f, r, u = (
        kwargs[key] for key in ("kernel_size", "filters", "res_blocks", "upsample_filters")
    )
    assert net.count_parameters() == expected_parameters(3, f, r, u, k, factors)


@pytest.mark.parametrize("scale", [2, 3, 5, 6, 12])
@pytest.mark.parametrize("output", ["log1p", "linear"])
def test_output_shape_and_non_negative(scale, output):
    torch.manual_seed(0)
    net = SRDRN(
        in_channels=2,
        filters=4,
        res_blocks=1,
        scale_factor=scale,
        upsample_filters=4,
        output=output,
    )
    y = net(torch.randn(3, 2, 4, 3) * 3)
    assert y.shape == (3, 1, 4 * scale, 3 * scale)
    assert torch.isfinite(y).all() and (y >= 0).all()
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize(
    ("output", "bias", "expected"),
    [
        ("log1p", 1.0, math.e - 1),
        ("log1p", -1.0, 0.0),
        ("log1p", 20.0, math.expm1(LOG1P_MAX)),
        ("linear", 3.0, 3.0),
        ("linear", -2.0, 0.0),
    ],
)
def test_head_maps_the_last_conv_to_mm_per_day(output, bias, expected):
    net = SRDRN(in_channels=1, filters=4, res_blocks=1, scale_factor=2, output=output)
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.fill_(bias)
    y = net(torch.randn(2, 1, 3, 3))
    torch.testing.assert_close(y, torch.full((2, 1, 6, 6), expected))


def test_fresh_blocks_pass_the_global_skip():
    """With the trunk's last batch-norm scale at 0, the trunk adds nothing: head → stages."""
    torch.manual_seed(1)
    net = SRDRN(
        in_channels=2, filters=4, res_blocks=2, scale_factor=2, upsample_filters=4, output="log1p"
    ).eval()
    with torch.no_grad():
        net.trunk[-1].weight.zero_()
        net.trunk[-1].bias.zero_()
    x = torch.randn(1, 2, 3, 3)
    u = net.out(net.upsample(net.head(x)))
    torch.testing.assert_close(net(x), torch.expm1(u.clamp(0, LOG1P_MAX)))


def test_explicit_factors_must_multiply_to_the_scale():
    with pytest.raises(DownpourError, match=r"srdrn.upsample=\[2, 3\] multiplies to 6"):
        SRDRN(in_channels=2, scale_factor=12, upsample=[2, 3])
    cfg = SRDRNConfig(filters=4, res_blocks=1, upsample=[2, 3, 2], upsample_filters=4)
    assert SRDRN.from_config(cfg, in_channels=2, scale_factor=12).factors == [2, 3, 2]
    with pytest.raises(DownpourError, match="data.scale_factor 6"):
        SRDRN.from_config(cfg, in_channels=2, scale_factor=6)
    auto = SRDRNConfig(filters=4, res_blocks=1, upsample=None, upsample_filters=4)
    assert SRDRN.from_config(auto, in_channels=2, scale_factor=5).factors == [5]


def test_wrong_input_channels_is_an_error():
    net = SRDRN(in_channels=2, filters=4, res_blocks=0, scale_factor=2, upsample_filters=4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2, h, w\)"):
        net(torch.randn(1, 3, 4, 4))


def test_registered_as_srdrn():
    cfg = Config(srdrn=SRDRNConfig(filters=4, res_blocks=1))
    net = build_model("srdrn", cfg, {"x_channels": 2, "scale_factor": 6})
    assert "srdrn" in MODELS and isinstance(net, SRDRN) and net.factors == [2, 3]
    assert (
        net.in_channels == 2
        and net.count_parameters()
        == SRDRN.from_config(cfg.srdrn, in_channels=2, scale_factor=6).count_parameters()
    )
