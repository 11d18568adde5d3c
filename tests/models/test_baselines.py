"""Baselines: bicubic interpolation and BCSD quantile mapping, by name."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.models.baselines import BASELINES, BCSD, bicubic, build_baseline, precip_channel


def rainy_fields(seed=0, n=120, h=3, w=4, scale=3):
    """Gamma-distributed coarse rain and a fine truth with many dry cells."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.6, 5.0, size=(n, h, w)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = 0.0
    wet = rng.random((n, h * scale, w * scale)) < 0.5
    y = (rng.gamma(0.4, 10.0, size=wet.shape) * wet).astype(np.float32)
    y[rng.random(y.shape) < 0.1] = 0.05  # drizzle below the wet threshold counts as dry
    return x, y


def test_bicubic_of_a_constant_is_the_constant():
    x = np.full((2, 3, 4), 7.5, dtype=np.float32)
    out = bicubic(x, 5)
    assert out.shape == (2, 15, 20) and out.dtype == np.float32
    np.testing.assert_allclose(out, 7.5, rtol=1e-6)
    t = bicubic(torch.full((1, 1, 2, 2), 3.0), 12)
    assert isinstance(t, torch.Tensor) and t.shape == (1, 1, 24, 24)
    torch.testing.assert_close(t, torch.full((1, 1, 24, 24), 3.0))


def test_bicubic_is_torch_interpolate_clamped_at_zero():
    x = np.zeros((1, 4, 4), dtype=np.float32)
    x[0, 1, 1] = 10.0  # a single wet cell: bicubic overshoots below 0 around it
    ref = F.interpolate(
        torch.from_numpy(x)[None], scale_factor=3, mode="bicubic", align_corners=False
    )[0].numpy()
    assert ref.min() < -0.1
    np.testing.assert_array_equal(bicubic(x, 3), np.maximum(ref, 0))
    many = np.random.default_rng(0).gamma(1.0, 2.0, size=(300, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(bicubic(many, 2, batch=7), bicubic(many, 2))


def test_bcsd_hand_computed_mapping():
    """One cell, scale 1: c = 0, 1, 2, 3 on training days, truth 0, 0, 5, 10."""
    x = np.array([0.0, 1.0, 2.0, 3.0], dtype=np.float32).reshape(4, 1, 1)
    y = np.array([0.0, 0.0, 5.0, 10.0], dtype=np.float32).reshape(4, 1, 1)
    model = BCSD(scale=1).fit(x, y)
    assert float(model.dry_cut[0]) == pytest.approx(1.5)  # between 2nd and 3rd smallest c
    v = np.array([1.4, 1.6, 2.0, 2.5, 3.0, 6.0, -1.0], dtype=np.float32).reshape(-1, 1, 1)
    out = model.predict(v).ravel()
    # 1.4 ≤ cut: dry; 1.6: level 1.6 → 0·0.4 + 5·0.6; 2.0 → 5; 2.5 → 7.5; 3 → 10;
    # 6 above the top: 6 · 10/3; -1 (clamped to 0 by bicubic): dry
    np.testing.assert_allclose(out, [0.0, 3.0, 5.0, 7.5, 10.0, 20.0, 0.0], rtol=1e-6)


def test_bcsd_maps_training_days_onto_the_truth_distribution():
    x, y = rainy_fields()
    n = x.shape[0]
    model = BCSD(scale=3, wet_threshold=0.1).fit(x, y)
    mapped = model.predict(x)
    dry_true = (y < 0.1).sum(axis=0)
    dry_mapped = (mapped < 0.1).sum(axis=0)
    assert np.abs(dry_mapped - dry_true).max() <= 1  # within 1/n of the truth's frequency
    # with every day a quantile level, mapped wet values are the truth's, rank for rank
    assert_same_wet_values(mapped, y, 0.1)
    assert mapped.min() >= 0 and n == 120


def assert_same_wet_values(mapped, truth, wet):
    for i in range(truth.shape[1]):
        for j in range(truth.shape[2]):
            a = np.sort(mapped[:, i, j][mapped[:, i, j] >= wet])
            b = np.sort(truth[:, i, j][truth[:, i, j] >= wet])
            np.testing.assert_allclose(a, b, rtol=1e-5)


def test_bcsd_with_fewer_quantile_levels_is_close():
    x, y = rainy_fields(seed=1, n=400)
    mapped = BCSD(scale=3, n_quantiles=50).fit(x, y).predict(x)
    q = [0.5, 0.75, 0.9, 0.95]
    err = np.abs(np.quantile(mapped, q, axis=0) - np.quantile(y, q, axis=0))
    scale = np.quantile(y, 0.95, axis=0)
    assert np.median(err / scale) < 0.05
    dry = np.abs((mapped < 0.1).mean(axis=0) - (y < 0.1).mean(axis=0))
    assert dry.max() <= 1 / 50 + 1 / 400


def test_bcsd_outside_the_mask_keeps_bicubic():
    x, y = rainy_fields(seed=2, n=40)
    mask = np.ones(y.shape[1:], dtype=bool)
    mask[:, :2] = False
    model = BCSD(scale=3).fit(x, y, mask)
    out = model.predict(x)
    np.testing.assert_array_equal(out[:, ~mask], bicubic(x, 3)[:, ~mask])
    assert model.c_table.shape == (40, int(mask.sum()))


def test_baselines_by_name():
    assert BASELINES.names() == ["bcsd", "bicubic"]
    assert build_baseline("bicubic", scale=2).requires_fit is False
    assert isinstance(build_baseline("bcsd", scale=2), BCSD)
    with pytest.raises(
        DownpourError, match="unknown baseline 'nearest'; valid names: bcsd, bicubic"
    ):
        build_baseline("nearest", scale=2)


def test_precip_channel_is_found_or_a_clear_error():
    def fake(x_log1p, names):
        norm = {"x_log1p": x_log1p}
        return xr.Dataset(coords={"channel": names}, attrs={"normalization": json.dumps(norm)})

    assert precip_channel(fake([False, True], ["q", "pr"])) == 1
    assert precip_channel(fake([True], ["pr_coarse"])) == 0
    with pytest.raises(
        DownpourError, match=r"no precipitation predictor channel \(channels: q, t2m\)"
    ):
        precip_channel(fake([False, False], ["q", "t2m"]))
