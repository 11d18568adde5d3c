from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from downpour.data.transforms import (
    Compose,
    MultiplicativeNoise,
    RandomFlip,
    build_transform,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sample(batch: tuple[int, ...] = (), seed: int = 0) -> dict[str, torch.Tensor]:
    """A physical sample whose x channel 0 is the 6×6 block mean of y."""
    g = _gen(seed)
    y = torch.rand(*batch, 1, 24, 24, generator=g) * 10
    y = torch.where(y > 3, y, torch.zeros(()))
    x0 = F.avg_pool2d(y.reshape(-1, 1, 24, 24), 6).reshape(*batch, 1, 4, 4)
    x1 = torch.rand(*batch, 1, 4, 4, generator=g)
    return {
        "x": torch.cat([x0, x1], dim=-3),
        "y": y,
        "s": torch.rand(*batch, 3, 24, 24, generator=g),
        "mask": torch.rand(*batch, 1, 24, 24, generator=g) > 0.3,
        "time": torch.tensor(7),
    }


# ------------------------------------------------------------------ RandomFlip


A = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


@pytest.mark.parametrize(
    ("ph", "pv", "expected"),
    [
        (1.0, 0.0, [[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]),
        (0.0, 1.0, [[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]]),
        (1.0, 1.0, [[6.0, 5.0, 4.0], [3.0, 2.0, 1.0]]),
        (0.0, 0.0, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
    ],
)
def test_flip_known_array(ph, pv, expected):
    flip = RandomFlip(ph, pv)
    want = torch.tensor(expected)
    out = flip({"x": A[None].clone(), "y": A[None].clone(), "s": A[None], "mask": A[None] > 2})
    assert torch.equal(out["y"], want[None])
    assert torch.equal(out["x"], want[None])
    assert torch.equal(out["s"], want[None])
    assert torch.equal(out["mask"], want[None] > 2)
    # y given as (H, W) works too
    assert torch.equal(flip({"x": A[None], "y": A})["y"], want)


def test_flip_keeps_low_res_aligned_with_block_mean():
    s = _sample()
    for seed in range(8):
        out = RandomFlip(generator=_gen(seed))(s)
        block = F.avg_pool2d(out["y"], 6)
        torch.testing.assert_close(block, out["x"][:1], rtol=1e-6, atol=1e-6)
    # and explicitly: block mean of flipped y == flipped block mean of y
    out = RandomFlip(1.0, 1.0)(s)
    torch.testing.assert_close(
        F.avg_pool2d(out["y"], 6), F.avg_pool2d(s["y"], 6).flip(-1).flip(-2), rtol=1e-6, atol=1e-6
    )


def test_flip_batched_per_item_and_consistent():
    s = _sample(batch=(64,))
    out = RandomFlip(generator=_gen(3))(s)
    kinds = set()
    for b in range(64):
        matched = None
        for kind, dims in {"none": (), "h": (-1,), "v": (-2,), "hv": (-1, -2)}.items():
            flipped = {
                k: (s[k][b].flip(dims) if dims else s[k][b]) for k in ("x", "y", "s", "mask")
            }
            if all(torch.equal(out[k][b], flipped[k]) for k in flipped):
                matched = kind
                break
        assert matched is not None, f"item {b}: x, y, s, mask not flipped consistently"
        kinds.add(matched)
    assert kinds == {"none", "h", "v", "hv"}
    torch.testing.assert_close(F.avg_pool2d(out["y"], 6), out["x"][:, :1], rtol=1e-6, atol=1e-6)
    assert torch.equal(out["time"], s["time"])


def test_flip_batched_y_without_channel_axis():
    s = _sample(batch=(8,))
    s["y"] = s["y"][:, 0]
    out = RandomFlip(generator=_gen(1))(s)
    assert out["y"].shape == (8, 24, 24)
    torch.testing.assert_close(
        F.avg_pool2d(out["y"][:, None], 6), out["x"][:, :1], rtol=1e-6, atol=1e-6
    )


def test_flip_batched_tensor_without_batch_dim_is_an_error():
    s = _sample(batch=(4,))
    s["s"] = s["s"][0]
    with pytest.raises(ValueError, match="'s'"):
        RandomFlip(1.0, 0.0)(s)


def test_flip_does_not_modify_input_and_is_reproducible():
    s = _sample()
    before = {k: v.clone() for k, v in s.items()}
    a = RandomFlip(generator=_gen(5))(s)
    b = RandomFlip(generator=_gen(5))(s)
    for k in before:
        assert torch.equal(s[k], before[k])
        assert torch.equal(a[k], b[k])


def test_flip_global_rng_is_seedable():
    s = _sample(batch=(16,))
    torch.manual_seed(11)
    a = RandomFlip()(s)
    torch.manual_seed(11)
    b = RandomFlip()(s)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_flip_rate_matches_probability():
    s = {"x": torch.arange(2.0).reshape(1, 1, 2).expand(4000, 1, 1, 2)}
    out = RandomFlip(p_horizontal=0.3, p_vertical=0.0, generator=_gen(2))(s)
    rate = (out["x"][:, 0, 0, 0] == 1).double().mean().item()
    assert abs(rate - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 4000)


def test_flip_rejects_bad_probability():
    with pytest.raises(ValueError, match="p_vertical"):
        RandomFlip(0.5, 1.5)


# --------------------------------------------------------- MultiplicativeNoise


def test_noise_zero_sigma_is_identity():
    s = _sample(batch=(3,))
    out = MultiplicativeNoise(0.0, channels=[0])(s)
    assert all(torch.equal(out[k], s[k]) for k in s)


def test_noise_keeps_sign_and_dry_pixels():
    y = torch.tensor([[[0.0, 0.0, 0.1, 5.0], [120.0, 0.0, 1e-3, 2.0]]])
    noise = MultiplicativeNoise(1.0, generator=_gen(0))
    for _ in range(50):
        out = noise({"y": y})["y"]
        assert torch.equal(out == 0, y == 0)
        assert (out[y > 0] > 0).all()
        assert (out >= 0).all()


def test_noise_is_mean_preserving():
    # y' = y·exp(σε − σ²/2), ε ~ N(0, 1): E[y'] = y and E[y'²] = y²·exp(σ²).
    # For y = 3, σ = 0.5: E[y'] = 3, E[y'²] = 9·e^0.25 = 11.556...
    sigma, n = 0.5, 400_000
    y = torch.full((1, 1, n), 3.0, dtype=torch.float64)
    out = MultiplicativeNoise(sigma, generator=_gen(7))({"y": y})["y"]
    se = 3.0 * math.sqrt(math.exp(sigma**2) - 1) / math.sqrt(n)
    assert abs(out.mean().item() - 3.0) < 5 * se
    assert abs((out**2).mean().item() / (9 * math.exp(sigma**2)) - 1) < 0.01
    # the log of the factor is N(−σ²/2, σ²)
    log_factor = torch.log(out / 3.0)
    assert abs(log_factor.mean().item() + sigma**2 / 2) < 5 * sigma / math.sqrt(n)
    assert abs(log_factor.std().item() - sigma) < 0.005


def test_noise_mean_preserved_over_repeated_draws_of_one_field():
    y = torch.tensor([[0.0, 1.0, 10.0, 50.0]])
    noise = MultiplicativeNoise(0.3, generator=_gen(1))
    draws = torch.stack([noise({"y": y})["y"] for _ in range(20_000)])
    mean = draws.mean(dim=0)
    se = y * math.sqrt(math.exp(0.09) - 1) / math.sqrt(20_000)
    assert mean[0, 0] == 0
    assert ((mean - y).abs() <= 5 * se + 1e-6).all()


def test_noise_on_precipitation_channels_only():
    s = _sample(batch=(2,))
    s["x"][..., 0, 0, 0] = 0.0  # a dry low-res cell stays dry
    out = MultiplicativeNoise(0.2, channels=[0], generator=_gen(4))(s)
    assert torch.equal(out["x"][:, 1], s["x"][:, 1])
    assert torch.equal(out["x"][:, 0] == 0, s["x"][:, 0] == 0)
    assert not torch.equal(out["x"][:, 0], s["x"][:, 0])
    assert (out["x"] >= 0).all()
    for k in ("s", "mask", "time"):
        assert torch.equal(out[k], s[k])
    # the input sample is not modified
    assert s["x"][0, 0, 0, 0] == 0
    assert not torch.equal(out["y"], s["y"])


def test_noise_without_channels_leaves_x_alone():
    s = _sample()
    out = MultiplicativeNoise(0.2, generator=_gen(4))(s)
    assert torch.equal(out["x"], s["x"])


def test_noise_bad_arguments():
    with pytest.raises(ValueError, match="sigma"):
        MultiplicativeNoise(-0.1)
    with pytest.raises(ValueError, match="out of range"):
        MultiplicativeNoise(0.1, channels=[2])(_sample())


# --------------------------------------------------------- Compose and builder


def test_compose_applies_in_order():
    def add(s):
        return {**s, "y": s["y"] + 1}

    def double(s):
        return {**s, "y": s["y"] * 2}

    y = torch.tensor([[1.0, 2.0]])
    assert torch.equal(Compose([add, double])({"y": y})["y"], torch.tensor([[4.0, 6.0]]))
    assert torch.equal(Compose([double, add])({"y": y})["y"], torch.tensor([[3.0, 5.0]]))
    assert torch.equal(Compose([])({"y": y})["y"], y)


def test_build_transform():
    assert build_transform(flips=False, noise=0.0, precip_channels=[0]) is None
    t = build_transform(flips=True, noise=0.0)
    assert [type(u) for u in t.transforms] == [RandomFlip]
    t = build_transform(flips=True, noise=0.02, precip_channels=[0])
    assert [type(u) for u in t.transforms] == [RandomFlip, MultiplicativeNoise]
    assert t.transforms[1].sigma == 0.02 and t.transforms[1].channels == (0,)
    assert "RandomFlip" in repr(t)
    with pytest.raises(ValueError, match="train.noise"):
        build_transform(flips=False, noise=-1.0)


def test_build_transform_with_generator_is_reproducible():
    s = _sample(batch=(4,))
    a = build_transform(True, 0.1, [0], generator=_gen(9))(s)
    b = build_transform(True, 0.1, [0], generator=_gen(9))(s)
    assert all(torch.equal(a[k], b[k]) for k in a)
