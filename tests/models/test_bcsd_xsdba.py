"""BCSD's quantile mapping against xsdba's empirical quantile mapping (the maintained reference).

Both map a value through ``Q`` quantile nodes at the Hazen positions
``(j + ½)/Q`` and interpolate linearly in between (xsdba's additive EQM gives
``sim + (ref_q(p) − hist_q(p))``, which is ``ref_q(p)`` at the position ``p``
of ``sim`` among the ``hist_q``, as BCSD). They differ only in the sample
quantile estimator at the nodes (an O(1/n) difference), so on wet cells
without ties, inside the training range, they agree to a fraction of a percent,
and closer with more training days.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from downpour.models.baselines import BCSD, bicubic

xsdba = pytest.importorskip("xsdba")


def _compare(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w, s, q = 2, 2, 3, 50
    x = rng.gamma(2.0, 4.0, size=(n, h, w)).astype(np.float32) + 5.0  # wet: no ties at 0
    c = np.asarray(bicubic(x, s))
    y = (c * 1.7 + rng.gamma(1.5, 2.0, size=c.shape)).astype(np.float32)
    model = BCSD(scale=s, wet_threshold=0.0, n_quantiles=q).fit(x, y)
    xs = rng.gamma(2.0, 4.0, size=(200, h, w)).astype(np.float32) + 5.0
    ours = model.predict(xs)
    cs = np.asarray(bicubic(xs, s))

    def da(a: np.ndarray, start: str) -> xr.DataArray:
        t = pd.date_range(start, periods=a.shape[0], freq="D")
        return xr.DataArray(a, dims=("time", "y", "x"), coords={"time": t}, attrs={"units": "mm/d"})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eqm = xsdba.EmpiricalQuantileMapping.train(
            da(y, "2000-01-01"), da(c, "2000-01-01"), nquantiles=q, group="time", kind="+"
        )
        ref = eqm.adjust(da(cs, "2020-01-01"), extrapolation="constant", interp="linear")
    ref = ref.transpose("time", "y", "x").values
    lo = model.c_table.min(axis=0).reshape(h * s, w * s)
    hi = model.c_table.max(axis=0).reshape(h * s, w * s)
    inside = (cs >= lo) & (cs <= hi)  # the two extrapolate differently outside the nodes
    assert inside.mean() > 0.95
    return np.abs(ours - ref)[inside] / np.abs(ref[inside])


def test_bcsd_matches_xsdba_empirical_quantile_mapping():
    rel = _compare(4000)
    assert rel.max() < 0.01 and np.median(rel) < 1e-3


def test_the_difference_is_the_quantile_estimator_and_shrinks_with_more_days():
    assert np.median(_compare(8000, seed=1)) < np.median(_compare(500, seed=1))
