"""Sample quality of generated fields (docs/metrics.md#sample-quality).

The generated fields Ŷ have dims (event, member, y, x), K members per event,
and are scored against the real Y of the same events, over valid (land)
cells only. The definitions are those of the design notes' own evaluation,
so that their numbers can be compared:

- **diversity**: mean over events of ``1 − mean pairwise cosine similarity``
  of the K flattened members (0: identical members). Two all-dry members are
  identical (similarity 1); an all-dry member beside a wet one has
  similarity 0. Needs K ≥ 2.
- **spatial correlation**: mean over events and members of the Pearson
  correlation between Ŷ and the event's Y (members or events with a constant
  field have no correlation and are left out; their number is reported).
  In prior mode Ŷ is not meant to reproduce Y's pattern: label it as such.
- **wet fraction**: share of cells ≥ the wet threshold (0.1 mm/day by
  default), pooled, for Ŷ beside Y; also per event and member.
- **mass bias**: mean over events and members of ``(ΣŶ − ΣY) / ΣY`` (events
  whose real field is all dry are left out).
- **KS**: two-sample Kolmogorov–Smirnov statistic and p-value
  (``scipy.stats.ks_2samp``) on the pooled values ≥ the P95 threshold (the
  tail; by default the P95 of wet training values recorded in the store),
  and on the pooled wet values.
- **max, mean, P95, P99, P99.9** of all pooled valid values of Ŷ beside Y
  (dry cells included), and the radially averaged power spectra.
- **ensemble** (K ≥ 2): the members as an ensemble forecast of the real
  field, cell by cell (DESIGN 8.3, ``EnsembleAccumulator``): ECDF and fair
  CRPS, MAE/RMSE of the ensemble mean, spread–skill ratio, rank histogram
  (ties broken at random, seeded by ``(seed, event time)``).
- **RAPSD ratio**: generated / real mean power per wavelength, summarised
  by band (:func:`downpour.metrics.spectra.ratio_summary`).

Everything is vectorised over events and members (events are processed in
chunks to bound memory); nothing loops over samples or pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from downpour.core.errors import DownpourError
from downpour.metrics.ensemble_verification import ENSEMBLE_SCORES, EnsembleAccumulator
from downpour.metrics.spectra import rapsd_ratio, ratio_summary

__all__ = [
    "SampleQuality",
    "check_samples",
    "diversity",
    "evaluate_samples",
    "mass_bias",
    "pearson",
    "wet_fraction",
]

_REQUIRED = {"samples": ("event", "member", "y", "x"), "target": ("event", "y", "x")}


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def diversity(members: np.ndarray) -> np.ndarray:
    """Per-event diversity: ``1 − mean pairwise cosine similarity`` of the members.

    Parameters
    ----------
    members
        Generated fields, shape ``(E, K, N)`` (N flattened valid cells), K ≥ 2.

    Returns
    -------
    numpy.ndarray
        Shape ``(E,)``. Pairs of all-zero members count as identical
        (similarity 1), an all-zero member beside a non-zero one as
        similarity 0.

    Raises
    ------
    DownpourError
        If K < 2 (diversity is undefined for a single member).
    """
    m = _f64(members)
    k = m.shape[1]
    if k < 2:
        raise DownpourError(
            f"diversity needs at least 2 members per event, the samples have K={k}; "
            "draw more with --set sampling.members=5"
        )
    norm = np.linalg.norm(m, axis=2, keepdims=True)
    dry = norm[..., 0] == 0.0
    unit = np.divide(m, norm, out=np.zeros_like(m), where=norm > 0)
    gram = np.einsum("ekn,eln->ekl", unit, unit)
    gram += dry[:, :, None] & dry[:, None, :]  # two dry members are identical
    off_diag = gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2)
    return 1.0 - off_diag / (k * (k - 1))


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis, broadcasting the leading ones.

    Parameters
    ----------
    a, b
        Arrays broadcastable to a common shape ``(..., N)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(...)``; NaN where either field is constant.
    """
    a, b = np.broadcast_arrays(_f64(a), _f64(b))
    da = a - a.mean(axis=-1, keepdims=True)
    db = b - b.mean(axis=-1, keepdims=True)
    num = (da * db).sum(axis=-1)
    den = np.sqrt((da * da).sum(axis=-1) * (db * db).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def wet_fraction(fields: np.ndarray, threshold: float) -> np.ndarray:
    """Share of cells ≥ ``threshold`` along the last axis, shape ``(...)``."""
    return (np.asarray(fields) >= threshold).mean(axis=-1)


def mass_bias(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``(ΣŶ − ΣY) / ΣY`` per event and member.

    Parameters
    ----------
    generated
        Shape ``(E, K, N)``.
    real
        Shape ``(E, N)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(E, K)``; NaN for events whose real field sums to zero.
    """
    g = _f64(generated).sum(axis=-1)
    r = _f64(real).sum(axis=-1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, (g - r) / np.where(r > 0, r, 1.0), np.nan)


def _ks(a: np.ndarray, b: np.ndarray) -> dict[str, float | int]:
    if a.size == 0 or b.size == 0:
        return {"statistic": float("nan"), "pvalue": float("nan"), "n_real": int(a.size),
                "n_generated": int(b.size)}  # fmt: skip
    res = stats.ks_2samp(a, b)
    return {
        "statistic": float(res.statistic),
        "pvalue": float(res.pvalue),
        "n_real": int(a.size),
        "n_generated": int(b.size),
    }


def _summary_stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {key: float("nan") for key in ("max", "mean", "P95", "P99", "P99.9")}
    p95, p99, p999 = np.quantile(values, [0.95, 0.99, 0.999])
    return {
        "max": float(values.max()),
        "mean": float(values.mean(dtype=np.float64)),
        "P95": float(p95),
        "P99": float(p99),
        "P99.9": float(p999),
    }


def _ensemble_summary(acc: EnsembleAccumulator | None, seed: int) -> dict[str, Any] | None:
    """JSON part ``ensemble`` of the summary (None without an accumulator, i.e. K = 1)."""
    if acc is None:
        return None
    res = acc.compute()
    return {**{k: res[k] for k in (*ENSEMBLE_SCORES, "rank_histogram", "n_valid")}, "seed": seed}


def _rapsd_ratio_summary(spectra: xr.Dataset) -> dict[str, Any] | None:
    """JSON part ``rapsd_ratio``: ratio per wavelength, band summary (None without spectra)."""
    if not spectra.data_vars:
        return None
    w, r = rapsd_ratio(*(spectra[v].values for v in ("wavenumber", "real", "generated")))
    ratio = [float(v) if np.isfinite(v) else None for v in r]
    return {"wavelength": w.tolist(), "ratio": ratio, **ratio_summary(w, r)}


@dataclass
class SampleQuality:
    """The sample-quality scores of one samples store.

    Attributes
    ----------
    summary
        JSON-ready headline numbers (see the module docstring), with the
        counts behind them and the samples' provenance (mode, temperature,
        pixel threshold).
    per_event
        ``xr.Dataset`` with ``diversity`` (event), ``correlation``,
        ``mass_bias``, ``wet_fraction`` (event, member) and
        ``wet_fraction_real`` (event).
    spectra
        ``xr.Dataset`` with ``real`` and ``generated`` power along
        ``wavenumber`` (cycles per cell), empty when the spectra module is
        unavailable.
    pooled
        Pooled valid values ``{"real": ..., "generated": ...}`` (1-D arrays,
        mm/day), kept for the intensity histograms and Q–Q plot.
    """

    summary: dict[str, Any]
    per_event: xr.Dataset
    spectra: xr.Dataset
    pooled: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def check_samples(ds: xr.Dataset, source: str = "samples") -> None:
    """Check that ``ds`` holds a samples store as written by ``downpour sample``.

    Raises
    ------
    DownpourError
        Naming the missing variable or wrong dims, and ``source``.
    """
    for name, dims in _REQUIRED.items():
        if name not in ds:
            raise DownpourError(
                f"{source}: variable {name!r} is missing (found {sorted(map(str, ds.data_vars))}); "
                "evaluate reads stores written by `downpour sample`"
            )
        if tuple(ds[name].dims) != dims:
            raise DownpourError(
                f"{source}: variable {name!r} has dims {tuple(ds[name].dims)}, expected {dims}"
            )
    if ds.sizes["event"] == 0:
        raise DownpourError(f"{source}: the samples hold no events")


def _tail_threshold(ds: xr.Dataset, tail_threshold: float | None) -> float:
    if tail_threshold is not None:
        return float(tail_threshold)
    thr = ds.attrs.get("thresholds")
    if thr:
        return float(json.loads(thr)["P95"] if isinstance(thr, str) else thr["P95"])
    real = ds["target"].values
    wet = real[np.isfinite(real) & (real >= 0.1)]
    return float(np.quantile(wet, 0.95)) if wet.size else float("nan")


def evaluate_samples(
    ds: xr.Dataset,
    *,
    wet_threshold: float | None = None,
    tail_threshold: float | None = None,
    chunk_events: int = 64,
    source: str = "samples",
    seed: int = 0,
) -> SampleQuality:
    """Score generated members against the real fields of their events.

    Parameters
    ----------
    ds
        A samples store: ``samples`` (event, member, y, x), ``target``
        (event, y, x), optionally ``mask`` (y, x) (default: cells where the
        target is finite).
    wet_threshold
        Wet-cell threshold; default: the store's ``wet_threshold`` attribute
        or 0.1.
    tail_threshold
        Threshold of the tail KS test; default: the P95 of wet training
        values recorded in the samples' ``thresholds`` attribute.
    chunk_events
        Events held in float64 at once.
    source
        Name used in error messages (the file path).
    seed
        Seed of the rank histogram's tie draws (per event, with its time).

    Returns
    -------
    SampleQuality
    """
    check_samples(ds, source)
    wet_thr = float(
        wet_threshold if wet_threshold is not None else ds.attrs.get("wet_threshold", 0.1)
    )
    tail_thr = _tail_threshold(ds, tail_threshold)
    real_all = np.asarray(ds["target"].values, dtype=np.float32)
    if "mask" in ds:
        mask = np.asarray(ds["mask"].values, dtype=bool)
    else:
        mask = np.isfinite(real_all).all(axis=0)
    if not mask.any():
        raise DownpourError(f"{source}: the mask has no valid cell")
    n_ev, k = ds.sizes["event"], ds.sizes["member"]
    gen_da = ds["samples"]
    div = np.empty(n_ev) if k >= 2 else None
    if div is None:
        diversity(np.zeros((1, k, 1)))  # raises the K < 2 error
    corr = np.empty((n_ev, k))
    mb = np.empty((n_ev, k))
    wf = np.empty((n_ev, k))
    wf_real = np.empty(n_ev)
    pooled_gen: list[np.ndarray] = []
    times = ds["time"].values if "time" in ds.coords and ds["time"].dims == ("event",) else None
    ens = EnsembleAccumulator(seed=seed, members=k) if k >= 2 else None
    for s in range(0, n_ev, chunk_events):
        sl = slice(s, min(s + chunk_events, n_ev))
        gen = np.asarray(gen_da.isel(event=sl).values, dtype=np.float32)[:, :, mask]
        real = real_all[sl][:, mask]
        bad = ~np.isfinite(gen)
        if bad.any():
            raise DownpourError(
                f"{source}: 'samples' has {int(bad.sum())} NaN/inf values inside the mask; "
                "re-sample from a checkpoint that trained without NaN"
            )
        div[sl] = diversity(gen)
        corr[sl] = pearson(gen, real[:, None, :])
        mb[sl] = mass_bias(gen, real)
        wf[sl] = wet_fraction(gen, wet_thr)
        wf_real[sl] = wet_fraction(real, wet_thr)
        pooled_gen.append(gen.ravel())
        if ens is not None:  # cells as a (1, N) grid: the mask is already applied
            ens.update(gen[:, :, None, :], real[:, None, :], None if times is None else times[sl])
    gen_flat = np.concatenate(pooled_gen)
    real_flat = real_all[:, mask].ravel()
    per_event = xr.Dataset(
        {
            "diversity": ("event", div),
            "correlation": (("event", "member"), corr),
            "mass_bias": (("event", "member"), mb),
            "wet_fraction": (("event", "member"), wf),
            "wet_fraction_real": ("event", wf_real),
        },
        coords={"time": ("event", ds["time"].values)} if "time" in ds.coords else None,
    )
    wet_real, wet_gen = real_flat >= wet_thr, gen_flat >= wet_thr
    summary: dict[str, Any] = {
        "events": n_ev,
        "members": k,
        "mode": ds.attrs.get("mode", "unknown"),
        "temperature": ds.attrs.get("temperature"),
        "pixel_threshold": ds.attrs.get("pixel_threshold"),
        "wet_rule": ds.attrs.get("wet_rule", "threshold"),
        "split": ds.attrs.get("split"),
        "wet_threshold": wet_thr,
        "tail_threshold": tail_thr,
        "diversity": float(div.mean()),
        "spatial_correlation": float(np.nanmean(corr)) if np.isfinite(corr).any() else None,
        "correlation_undefined": int((~np.isfinite(corr)).sum()),
        "wet_fraction_real": float(wet_real.mean()),
        "wet_fraction_generated": float(wet_gen.mean()),
        "wet_fraction_gap": float(wet_gen.mean() - wet_real.mean()),
        "mass_bias": float(np.nanmean(mb)) if np.isfinite(mb).any() else None,
        "mass_bias_undefined_events": int((~np.isfinite(mb[:, 0])).sum()),
        "ks_tail": _ks(real_flat[real_flat >= tail_thr], gen_flat[gen_flat >= tail_thr]),
        "ks_wet": _ks(real_flat[wet_real], gen_flat[wet_gen]),
        "real": _summary_stats(real_flat),
        "generated": _summary_stats(gen_flat),
        "ensemble": _ensemble_summary(ens, seed),
    }
    spectra = _spectra(ds, mask, chunk_events)
    summary["rapsd_ratio"] = _rapsd_ratio_summary(spectra)
    return SampleQuality(
        summary=summary,
        per_event=per_event,
        spectra=spectra,
        pooled={"real": real_flat, "generated": gen_flat},
    )


def _spectra(ds: xr.Dataset, mask: np.ndarray, chunk_events: int) -> xr.Dataset:
    """Mean RAPSD of the real fields and of all members (cells outside the mask set to 0)."""
    try:
        from downpour.metrics.spectra import mean_rapsd
    except ImportError:  # pragma: no cover - the spectra module ships with the package
        return xr.Dataset()
    real = np.where(mask, np.nan_to_num(ds["target"].values), 0.0)
    freq, p_real = mean_rapsd(real)
    n_ev = ds.sizes["event"]
    acc = None
    for s in range(0, n_ev, chunk_events):
        gen = np.nan_to_num(ds["samples"].isel(event=slice(s, s + chunk_events)).values)
        gen = np.where(mask, gen, 0.0)
        _, p = mean_rapsd(gen.reshape(-1, *gen.shape[-2:]))
        w = gen.shape[0] * gen.shape[1]
        acc = p * w if acc is None else acc + p * w
    p_gen = acc / (n_ev * ds.sizes["member"])
    return xr.Dataset(
        {"real": ("wavenumber", p_real), "generated": ("wavenumber", p_gen)},
        coords={"wavenumber": freq},
    )
