"""Sample-quality metrics (DESIGN.md §8.1) against brute-force loops, scipy and hand values."""

import itertools
import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from downpour.core.errors import DownpourError
from downpour.metrics.sample_quality import (
    diversity,
    evaluate_samples,
    mass_bias,
    pearson,
    wet_fraction,
)


def brute_diversity(members: np.ndarray) -> np.ndarray:
    out = []
    for ev in members:
        sims = []
        for i, j in itertools.permutations(range(len(ev)), 2):
            a, b = ev[i].astype(float), ev[j].astype(float)
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            if na == 0 and nb == 0:
                sims.append(1.0)
            elif na == 0 or nb == 0:
                sims.append(0.0)
            else:
                sims.append(a @ b / (na * nb))
        out.append(1 - np.mean(sims))
    return np.array(out)


def random_samples(rng: np.random.Generator, e: int = 5, k: int = 4, h: int = 9, w: int = 7):
    gen = rng.gamma(0.6, 6.0, size=(e, k, h, w)) * (rng.random((e, k, h, w)) < 0.7)
    real = rng.gamma(0.6, 6.0, size=(e, h, w)) * (rng.random((e, h, w)) < 0.7)
    mask = np.ones((h, w), bool)
    mask[:2, :3] = False
    return gen.astype(np.float32), real.astype(np.float32), mask


def as_dataset(gen, real, mask, **attrs) -> xr.Dataset:
    gen = np.where(mask, gen, np.nan)
    real = np.where(mask, real, np.nan)
    ds = xr.Dataset(
        {
            "samples": (("event", "member", "y", "x"), gen),
            "target": (("event", "y", "x"), real),
            "mask": (("y", "x"), mask),
        },
        coords={"time": ("event", np.arange(len(real)).astype("datetime64[D]"))},
    )
    ds.attrs.update(attrs)
    return ds


def test_diversity_matches_brute_force_with_dry_members():
    rng = np.random.default_rng(0)
    m = rng.random((6, 5, 40))
    m[0, 1] = 0.0  # one dry member beside wet ones
    m[1, :2] = 0.0  # two dry members: identical
    np.testing.assert_allclose(diversity(m), brute_diversity(m), atol=1e-12)


def test_diversity_hand_values():
    same = np.tile(np.array([1.0, 2.0, 3.0]), (1, 3, 1))
    assert diversity(same) == pytest.approx([0.0], abs=1e-12)
    orth = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    assert diversity(orth) == pytest.approx([1.0])
    # 45 degrees apart: cos = 1/sqrt(2)
    tilt = np.array([[[1.0, 0.0], [1.0, 1.0]]])
    assert diversity(tilt) == pytest.approx([1 - 1 / np.sqrt(2)])


def test_diversity_needs_two_members():
    with pytest.raises(DownpourError, match="at least 2 members.*K=1.*sampling.members"):
        diversity(np.ones((3, 1, 10)))


def test_pearson_matches_scipy_and_flags_constant_fields():
    rng = np.random.default_rng(1)
    a = rng.random((4, 3, 50))
    b = rng.random((4, 1, 50)) + 0.5 * a[:, :1]
    got = pearson(a, b)
    for e, k in itertools.product(range(4), range(3)):
        assert got[e, k] == pytest.approx(stats.pearsonr(a[e, k], b[e, 0]).statistic, abs=1e-12)
    flat = pearson(np.ones((1, 50)), rng.random((1, 50)))
    assert np.isnan(flat[0])


def test_wet_fraction_and_mass_bias_by_hand():
    gen = np.array([[[0.0, 0.1, 2.0, 3.0], [0.05, 0.0, 0.0, 1.0]]])  # (1, 2, 4)
    real = np.array([[1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(wet_fraction(gen, 0.1), [[0.75, 0.25]])
    np.testing.assert_allclose(mass_bias(gen, real), [[(5.1 - 4) / 4, (1.05 - 4) / 4]])
    assert np.isnan(mass_bias(gen, np.zeros((1, 4)))).all()


def test_evaluate_samples_against_brute_force():
    rng = np.random.default_rng(2)
    gen, real, mask = random_samples(rng)
    thresholds = json.dumps({"P90": 8.0, "P95": 10.0, "P99": 20.0})
    q = evaluate_samples(as_dataset(gen, real, mask, thresholds=thresholds, mode="posterior"))
    s = q.summary
    e, k = gen.shape[:2]
    g = gen[:, :, mask]
    r = real[:, mask]
    corr = [stats.pearsonr(g[i, j], r[i]).statistic for i in range(e) for j in range(k)]
    mb = [(g[i, j].sum() - r[i].sum()) / r[i].sum() for i in range(e) for j in range(k)]
    assert s["diversity"] == pytest.approx(brute_diversity(g).mean(), abs=1e-9)
    assert s["spatial_correlation"] == pytest.approx(np.mean(corr), abs=1e-6)  # float32 data
    assert s["mass_bias"] == pytest.approx(np.mean(mb), abs=1e-6)
    assert s["wet_fraction_real"] == pytest.approx((r >= 0.1).mean())
    assert s["wet_fraction_generated"] == pytest.approx((g >= 0.1).mean())
    ks = stats.ks_2samp(r[r >= 10.0], g[g >= 10.0])
    assert s["ks_tail"]["statistic"] == pytest.approx(ks.statistic)
    assert s["ks_tail"]["pvalue"] == pytest.approx(ks.pvalue)
    assert s["ks_tail"]["n_real"] == int((r >= 10.0).sum())
    assert s["generated"]["P99"] == pytest.approx(np.quantile(g, 0.99), rel=1e-6)
    assert s["real"]["max"] == pytest.approx(r.max())
    assert s["tail_threshold"] == 10.0
    # per-event arrays agree with the summary
    assert float(q.per_event["diversity"].mean()) == pytest.approx(s["diversity"])


def test_ks_statistic_is_the_largest_ecdf_gap():
    rng = np.random.default_rng(3)
    a, b = rng.exponential(5.0, 300), rng.exponential(6.0, 400)
    pts = np.concatenate([a, b])
    gap = max(abs((a <= t).mean() - (b <= t).mean()) for t in pts)
    assert stats.ks_2samp(a, b).statistic == pytest.approx(gap)


def test_chunking_gives_the_same_numbers():
    rng = np.random.default_rng(4)
    ds = as_dataset(*random_samples(rng, e=7))
    one = evaluate_samples(ds, chunk_events=100).summary
    many = evaluate_samples(ds, chunk_events=2).summary
    for key in ("diversity", "spatial_correlation", "mass_bias", "wet_fraction_generated"):
        assert many[key] == pytest.approx(one[key], abs=1e-12)


def test_identical_members_have_zero_diversity_and_perfect_scores():
    rng = np.random.default_rng(5)
    _, real, mask = random_samples(rng)
    gen = np.repeat(real[:, None], 3, axis=1)
    s = evaluate_samples(as_dataset(gen, real, mask)).summary
    assert s["diversity"] == pytest.approx(0.0, abs=1e-7)
    assert s["spatial_correlation"] == pytest.approx(1.0)
    assert s["mass_bias"] == pytest.approx(0.0, abs=1e-7)
    assert s["ks_wet"]["statistic"] == pytest.approx(0.0)
    assert s["wet_fraction_gap"] == 0.0


def test_bad_samples_stores():
    rng = np.random.default_rng(6)
    ds = as_dataset(*random_samples(rng))
    with pytest.raises(DownpourError, match="s.zarr: variable 'target' is missing"):
        evaluate_samples(ds.drop_vars("target"), source="s.zarr")
    with pytest.raises(DownpourError, match="at least 2 members"):
        evaluate_samples(ds.isel(member=slice(0, 1)))
    bad = ds.copy(deep=True)
    bad["samples"][0, 0, 5, 5] = np.nan
    with pytest.raises(DownpourError, match="1 NaN/inf values inside the mask"):
        evaluate_samples(bad)
