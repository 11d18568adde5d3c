from __future__ import annotations

import numpy as np
import pytest

from downpour.core.errors import DownpourError
from downpour.metrics.ensemble import crps_ensemble, mean_crps, rank_histogram


def sample(seed: int = 0, shape=(3, 5, 6, 4)):
    """obs (event, y, x) and members (event, member, y, x), rain-like with dry ties."""
    rng = np.random.default_rng(seed)
    ens = np.where(rng.random(shape) < 0.6, rng.gamma(0.8, 5.0, shape), 0.0)
    obs = np.where(rng.random(ens[:, 0].shape) < 0.6, rng.gamma(0.8, 5.0, ens[:, 0].shape), 0.0)
    return obs, ens


def brute_crps(y: float, x: np.ndarray, fair: bool) -> float:
    k = len(x)
    skill = sum(abs(xi - y) for xi in x) / k
    pairs = sum(abs(xi - xj) for xi in x for xj in x)
    return skill - pairs / (2 * k * (k - 1) if fair else 2 * k * k)


def test_crps_hand_values():
    # members 0 and 2, observation 1: mean |x - y| = 1, ΣΣ|xi - xj| = 4 (ordered pairs)
    obs, ens = np.array([1.0]), np.array([[0.0, 2.0]])
    assert crps_ensemble(obs, ens).tolist() == [pytest.approx(1 - 4 / 8)]  # 1 − 4/(2·2²)
    assert crps_ensemble(obs, ens, estimator="fair").tolist() == [0.0]  # 1 − 4/(2·2·1)
    # one member: CRPS is the absolute error
    assert crps_ensemble(np.array([3.0]), np.array([[1.0]])).tolist() == [2.0]


@pytest.mark.parametrize("estimator", ["ecdf", "fair"])
def test_crps_matches_brute_force(estimator):
    obs, ens = sample(1)
    got = crps_ensemble(obs, ens, member_axis=1, estimator=estimator)
    assert got.shape == obs.shape
    for idx in np.ndindex(obs.shape):
        e, i, j = idx
        ref = brute_crps(obs[idx], ens[e, :, i, j], estimator == "fair")
        assert got[idx] == pytest.approx(ref, abs=1e-12)


# scoringrules 0.10: "nrg", "qd" and "int" are the ECDF CRPS; "fair" and "pwm" the fair one
@pytest.mark.parametrize(
    ("ours", "theirs"), [("ecdf", "nrg"), ("ecdf", "qd"), ("fair", "fair"), ("fair", "pwm")]
)
def test_crps_matches_scoringrules(ours, theirs):
    sr = pytest.importorskip("scoringrules")
    obs, ens = sample(2)
    got = crps_ensemble(obs, ens, member_axis=1, estimator=ours)
    ref = sr.crps_ensemble(obs, np.moveaxis(ens, 1, -1), m_axis=-1, estimator=theirs)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert np.all(got >= 0)


def test_crps_mask_nan_and_member_axis():
    obs, ens = sample(3)
    mask = np.ones(obs.shape[1:], bool)
    mask[0, 0] = False
    ens[1, 2, 3, 3] = np.nan  # one member missing -> point excluded
    got = crps_ensemble(obs, ens, mask=mask)
    assert np.isnan(got[:, 0, 0]).all() and np.isnan(got[1, 3, 3])
    assert np.isfinite(got).sum() == obs.size - 3 - 1
    assert mean_crps(obs, ens, mask=mask) == pytest.approx(np.nanmean(got))
    moved = crps_ensemble(obs, np.moveaxis(ens, 1, 0), member_axis=0, mask=mask)
    np.testing.assert_array_equal(np.isnan(moved), np.isnan(got))
    np.testing.assert_allclose(moved[np.isfinite(got)], got[np.isfinite(got)])


def test_crps_bad_input():
    obs, ens = sample(4)
    with pytest.raises(DownpourError, match="valid: ecdf, fair"):
        crps_ensemble(obs, ens, estimator="pwm")
    with pytest.raises(DownpourError, match="at least 2 members"):
        crps_ensemble(obs, ens[:, :1], estimator="fair")
    with pytest.raises(DownpourError, match="do not match"):
        crps_ensemble(obs[:, :-1], ens)
    with pytest.raises(DownpourError, match="no valid point"):
        mean_crps(obs, ens, mask=np.zeros(obs.shape[1:], bool))


def test_rank_histogram_matches_brute_force_without_ties():
    rng = np.random.default_rng(5)
    obs, ens = rng.normal(size=(4, 7, 6)), rng.normal(size=(4, 5, 7, 6))
    mask = rng.random((7, 6)) > 0.3
    counts = rank_histogram(obs, ens, mask=mask)
    ref = np.zeros(6, int)
    for e, i, j in np.ndindex(obs.shape):
        if mask[i, j]:
            ref[int(np.sum(ens[e, :, i, j] < obs[e, i, j]))] += 1
    np.testing.assert_array_equal(counts, ref)
    assert counts.sum() == 4 * mask.sum()


def test_rank_histogram_breaks_ties_uniformly_and_reproducibly():
    obs, ens = np.zeros((2, 60, 50)), np.zeros((2, 4, 60, 50))  # all dry: every rank is a tie
    counts = rank_histogram(obs, ens, seed=1)
    assert counts.sum() == 6000 and counts.shape == (5,)
    np.testing.assert_allclose(counts, 1200, rtol=0.1)  # uniform over ranks 0..4
    np.testing.assert_array_equal(counts, rank_histogram(obs, ens, seed=1))
    assert not np.array_equal(counts, rank_histogram(obs, ens, seed=2))


def test_rank_histogram_is_flat_for_a_calibrated_ensemble():
    rng = np.random.default_rng(6)
    obs, ens = sample(7, (20, 9, 20, 20))
    obs = np.where(rng.random(obs.shape) < 0.6, rng.gamma(0.8, 5.0, obs.shape), 0.0)
    counts = rank_histogram(obs, ens, seed=0)
    np.testing.assert_allclose(counts / counts.sum(), 0.1, atol=0.012)
    assert counts.shape == (10,) and counts.sum() == obs.size
