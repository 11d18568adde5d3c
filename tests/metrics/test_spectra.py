from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.metrics.spectra import mean_rapsd, rapsd, ring_index


@pytest.mark.parametrize("shape", [(16, 16), (15, 15), (12, 17), (17, 12)])
@pytest.mark.parametrize("normalize", [False, True])
def test_rapsd_matches_pysteps(shape, normalize):
    spectral = pytest.importorskip("pysteps.utils.spectral")
    rng = np.random.default_rng(0)
    field = rng.gamma(0.7, 5.0, shape)
    ref, ref_freq = spectral.rapsd(
        field, fft_method=np.fft, return_freq=True, d=2.5, normalize=normalize
    )
    freq, power = rapsd(field, d=2.5, normalize=normalize)
    np.testing.assert_allclose(power, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(freq, ref_freq, rtol=1e-15)
    assert freq.shape == (max(shape) // 2 + max(shape) % 2,)


def test_constant_and_cosine_fields_by_hand():
    # constant c on 8×8: F(0,0) = 64c, power |64c|²/64 = 64c² in ring 0, nothing else
    _, power = rapsd(np.full((8, 8), 2.0))
    np.testing.assert_allclose(power, [256.0, 0, 0, 0], atol=1e-10)
    # cos(2π·3x/16): two spikes of |F| = 16·16/2 = 128 at (0, ±3), power 128²/256 = 64
    # each, both in ring 3: ring mean = 128 / (number of cells of ring 3)
    x = np.arange(16)
    field = np.broadcast_to(np.cos(2 * np.pi * 3 * x / 16), (16, 16))
    freq, power = rapsd(field)
    rings, _ = ring_index((16, 16))
    expected = np.zeros(8)
    expected[3] = 128.0 / np.sum(rings == 3)
    np.testing.assert_allclose(power, expected, atol=1e-9)
    assert freq[3] == pytest.approx(3 / 16)


def test_vectorised_over_leading_dims():
    rng = np.random.default_rng(1)
    stack = rng.random((2, 3, 10, 14))
    freq, power = rapsd(stack)
    assert power.shape == (2, 3, 7)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(power[i, j], rapsd(stack[i, j])[1], rtol=1e-12)


def test_mask_fill_conventions():
    rng = np.random.default_rng(2)
    field = rng.random((3, 12, 12))
    mask = np.ones((12, 12), bool)
    mask[:, :4] = False  # "ocean" on the left
    field_nan = field.copy()
    field_nan[0, 5, 5] = np.nan  # non-finite cells are filled as well
    _, masked = rapsd(field_nan, mask=mask)
    filled = np.where(mask, field_nan, 0.0)
    filled[0, 5, 5] = 0.0
    np.testing.assert_allclose(masked, rapsd(filled)[1], rtol=1e-12)
    _, by_mean = rapsd(field, mask=mask, fill_value="mean")
    means = field[:, mask].mean(axis=1)
    ref = rapsd(np.where(mask, field, means[:, None, None]))[1]
    np.testing.assert_allclose(by_mean, ref, rtol=1e-12)
    _, by_value = rapsd(field, mask=mask, fill_value=-1.0)
    np.testing.assert_allclose(by_value, rapsd(np.where(mask, field, -1.0))[1], rtol=1e-12)
    with pytest.raises(DownpourError, match="fill_value"):
        rapsd(field, mask=mask, fill_value="median")


def test_mean_rapsd_batches_and_xarray():
    rng = np.random.default_rng(3)
    stack = rng.gamma(0.5, 4.0, (7, 9, 11))
    freq, mean = mean_rapsd(stack, batch=3)
    np.testing.assert_allclose(mean, rapsd(stack)[1].mean(axis=0), rtol=1e-12)
    da = xr.DataArray(stack, dims=("time", "y", "x")).chunk({"time": 2})
    freq2, mean2 = mean_rapsd(da, batch=2, normalize=True)
    np.testing.assert_allclose(mean2, rapsd(stack, normalize=True)[1].mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(freq, freq2)
    assert mean2.sum() == pytest.approx(1.0)
    with pytest.raises(DownpourError, match="non-empty stack"):
        mean_rapsd(np.zeros((0, 4, 4)))
