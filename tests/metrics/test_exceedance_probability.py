"""Exceedance probabilities from quantiles: known distributions, knots, tails, monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from downpour.core.errors import DownpourError
from downpour.metrics.exceedance import check_taus, exceedance_probability

HEADS = np.array([0.5, 0.95, 0.99, 0.999])  # the multi-quantile SRDRN's levels


def zero_inflated(p0: float, shape: float = 0.5, scale: float = 8.0):
    """Quantile and survival functions of ``p0`` zeros, gamma otherwise."""
    g = stats.gamma(shape, scale=scale)

    def quantile(tau):
        tau = np.asarray(tau, dtype=float)
        return np.where(tau <= p0, 0.0, g.ppf(np.clip((tau - p0) / (1 - p0), 0, 1)))

    return quantile, lambda t: (1 - p0) * g.sf(t)


def test_exponential_is_recovered_exactly_at_knots_and_in_the_tail():
    taus = np.r_[np.arange(1, 10) / 10, 0.95, 0.99, 0.999]
    q = -np.log1p(-taus)  # unit exponential
    assert np.array_equal(exceedance_probability(q, taus, q), 1.0 - taus)  # exact at the knots
    t = np.linspace(0.0, 12.0, 4001)
    p = exceedance_probability(q, taus, t)
    # between knots: linear interpolation of F, error ≤ max f'·h²/8 ≈ 0.01 for these gaps
    assert np.abs(p - np.exp(-t)).max() < 0.01
    above = t >= q[-1]  # the exponential tail through the top two knots is exact here
    np.testing.assert_allclose(p[above], np.exp(-t[above]), rtol=1e-12)


def test_zero_inflated_gamma_with_dense_levels():
    taus = np.r_[np.arange(1, 20) / 20, 0.99, 0.995, 0.999]
    quantile, sf = zero_inflated(0.6)
    q = quantile(taus)
    wet = q > 0
    np.testing.assert_array_equal(exceedance_probability(q[wet], taus[wet], q[wet]), 1 - taus[wet])
    # a run of zero knots: the mass at 0 is the largest level whose quantile is 0
    assert exceedance_probability(q, taus, 0.0) == pytest.approx(0.4, abs=1e-15)
    t = np.linspace(1e-6, q[-1], 3000)
    assert np.abs(exceedance_probability(q, taus, t) - sf(t)).max() < 0.015
    t = np.linspace(q[-1], 80.0, 3000)  # exponential tail for a gamma tail: within 25 %
    t = t[sf(t) > 1e-5]
    np.testing.assert_allclose(exceedance_probability(q, taus, t), sf(t), rtol=0.25)


def test_four_heads_exact_at_knots_and_the_stated_point_mass_rule():
    quantile, sf = zero_inflated(0.6)
    q = quantile(HEADS)  # 0, then three wet quantiles
    assert q[0] == 0 and np.all(q[1:] > 0)
    np.testing.assert_array_equal(exceedance_probability(q, HEADS, q), 1 - HEADS)
    # the heads say only 0.5 ≤ P(y = 0) < 0.95: the rule takes the least mass, 0.5
    assert exceedance_probability(q, HEADS, 0.0) == 0.5
    assert exceedance_probability(q, HEADS, -1e-9) == 1.0  # below the lower bound


def test_below_the_lowest_knot_is_linear_from_the_lower_bound():
    taus = np.array([0.2, 0.5, 0.9])
    q = np.array([2.0, 4.0, 9.0])
    t = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(
        exceedance_probability(q, taus, t), [1.0, 1.0, 0.95, 0.9, 0.8], rtol=1e-15
    )
    # another lower bound, and quantiles below it (the bound then moves to q_1)
    assert exceedance_probability(q, taus, 1.5, lower=1.0) == pytest.approx(0.9)
    np.testing.assert_array_equal(exceedance_probability(q - 5, taus, [-3.5, -3.0]), [1.0, 0.8])


def test_ties_and_empty_tail():
    p = exceedance_probability(np.array([0.0, 0.0, 5.0, 9.0]), HEADS, [0.0, 5.0, 9.0])
    np.testing.assert_allclose(p, [0.05, 0.01, 0.001])
    dry = np.zeros(4)  # every head 0: no mass above 0 (the tail's scale is 0)
    np.testing.assert_array_equal(exceedance_probability(dry, HEADS, [-1.0, 0.0, 0.1]), [1, 0, 0])
    flat_top = np.array([1.0, 2.0, 3.0, 3.0])  # top two equal: the tail's mass sits on q_Q
    np.testing.assert_allclose(exceedance_probability(flat_top, HEADS, [2.0, 3.0]), [0.05, 0.0])


def test_monotone_bounded_and_sorted_on_random_quantiles():
    rng = np.random.default_rng(3)
    q = rng.gamma(0.7, 5.0, size=(500, 4))
    q[rng.random((500, 4)) < 0.3] = 0.0  # ties at 0
    q[:50] = q[:50, ::-1]  # crossing heads: rearranged
    t = np.linspace(-1.0, 60.0, 400)
    p = exceedance_probability(q[:, None, :], HEADS, t)  # (500, 400)
    assert p.shape == (500, 400)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p, axis=1) <= 1e-15)
    np.testing.assert_array_equal(p, exceedance_probability(np.sort(q, 1)[:, None, :], HEADS, t))


def test_axis_broadcasting_and_missing_values():
    q = np.stack([np.zeros((2, 3)), np.full((2, 3), 4.0), np.full((2, 3), 6.0)])  # (Q, y, x)
    q[1, 0, 0] = np.nan
    p = exceedance_probability(q, [0.5, 0.9, 0.99], np.array([[1.0], [np.inf]]), axis=0)
    assert p.shape == (2, 3)
    assert np.isnan(p[0, 0]) and np.isnan(p[1]).all()
    assert p[0, 1] == pytest.approx(1 - (0.5 + 0.4 * 1 / 4))


def test_bad_levels_are_refused():
    with pytest.raises(DownpourError, match="strictly increasing"):
        check_taus([0.5, 0.5])
    with pytest.raises(DownpourError, match=r"inside \(0, 1\)"):
        check_taus([0.5, 1.0])
    with pytest.raises(DownpourError, match="at least 2"):
        exceedance_probability([1.0], [0.5], 0.0)
    with pytest.raises(DownpourError, match="3 quantiles along axis -1 but 2 levels"):
        exceedance_probability([1.0, 2.0, 3.0], [0.5, 0.9], 0.0)
