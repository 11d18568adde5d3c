"""Radially averaged power spectral density (RAPSD) of precipitation fields.

Conventions (identical to ``pysteps.utils.spectral.rapsd(field, fft_method=np.fft,
return_freq=True, d=d, normalize=normalize)`` on a NaN-free field):

- power ``|fftshift(fft2(field))|² / (m·n)`` of each ``(m, n)`` field;
- ring ``r`` holds the cells whose distance to the zero frequency, in index
  units ``round(sqrt(i² + j²))`` with ``i``, ``j`` the centred FFT indices,
  equals ``r``, for ``r = 0 .. L//2 − 1`` (``L = max(m, n)`` even) or
  ``0 .. L//2`` (``L`` odd); the corners beyond are dropped; a ring's power
  is the mean over its cells;
- frequencies ``r / (L·d)`` (``numpy.fft.fftfreq(L, d)[:R]``) in cycles per
  unit of ``d``. On a non-square grid the ring radius is counted in index
  units of both axes, as pysteps does, so ring ``r`` mixes ``r/(m·d)`` along
  y and ``r/(n·d)`` along x; compare spectra on the same grid only;
- ``normalize=True`` divides each field's spectrum by its sum.

Masked cells (mask False, e.g. ocean) and non-finite cells are replaced by
``fill_value`` before the FFT: ``0.0`` (the default, "no rain there") or
``"mean"``, the mean of the field's valid cells, which avoids a spurious
rain/no-rain edge along the coast. The mask itself is not corrected for
(no division by the valid fraction): compare spectra computed with the same
mask and fill.

Examples
--------
>>> freq, power = rapsd(np.ones((3, 8, 8)))
>>> freq.tolist()
[0.0, 0.125, 0.25, 0.375]
>>> power[0].round(6).tolist()  # all power in the mean: |64|² / 64
[64.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from downpour.core.errors import DownpourError

__all__ = ["RATIO_BANDS", "mean_rapsd", "rapsd", "rapsd_ratio", "ratio_summary", "ring_index"]

#: Wavelength bands ``[low, high)`` in cells of :func:`ratio_summary`, longest first.
RATIO_BANDS: tuple[tuple[float, float], ...] = (
    (64.0, np.inf),
    (32.0, 64.0),
    (16.0, 32.0),
    (8.0, 16.0),
    (4.0, 8.0),
    (3.0, 4.0),
)


def ring_index(shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Ring number of each cell of the fftshifted spectrum.

    Parameters
    ----------
    shape
        Field shape ``(m, n)``.

    Returns
    -------
    rings
        Int64 ``(m, n)``: ring of each cell, ``n_rings`` for cells beyond the last ring.
    n_rings
        Number of rings R (``L//2`` for even ``L = max(m, n)``, ``L//2 + 1`` for odd).
    """
    m, n = shape
    yc = np.arange(m) - m // 2
    xc = np.arange(n) - n // 2
    r = np.rint(np.sqrt(yc[:, None] ** 2 + xc[None, :] ** 2)).astype(np.int64)
    big = max(m, n)
    n_rings = big // 2 + (big % 2)
    return np.where(r < n_rings, r, n_rings), n_rings


def _filled(fields: np.ndarray, mask: Any, fill_value: float | str) -> np.ndarray:
    valid = np.isfinite(fields)
    if mask is not None:
        valid &= np.broadcast_to(np.asarray(mask, dtype=bool), fields.shape[-2:])
    if isinstance(fill_value, str):
        if fill_value != "mean":
            raise DownpourError(f"rapsd: fill_value must be a number or 'mean', got {fill_value!r}")
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.where(valid, fields, 0.0).sum(axis=(-2, -1), keepdims=True)
            fill = total / valid.sum(axis=(-2, -1), keepdims=True)
        fill = np.where(np.isfinite(fill), fill, 0.0)  # a field with no valid cell: 0
    else:
        fill = np.float64(fill_value)
    return np.where(valid, fields, fill)


def rapsd(
    fields: Any,
    *,
    mask: Any = None,
    fill_value: float | str = 0.0,
    d: float = 1.0,
    normalize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of each field (vectorised over leading dims).

    Parameters
    ----------
    fields
        Array ``(..., m, n)``.
    mask
        Boolean ``(m, n)``, True = valid; ``None`` = all cells (non-finite
        cells are always treated as masked).
    fill_value
        Value put in masked cells before the FFT: a number or ``"mean"``.
    d
        Grid spacing (e.g. km), for the frequencies.
    normalize
        Divide each spectrum by its sum.

    Returns
    -------
    freq
        ``(R,)`` frequencies in cycles per unit of ``d``.
    power
        ``(..., R)`` mean power per ring.
    """
    f = np.asarray(fields.detach().cpu().double() if hasattr(fields, "detach") else fields)
    f = f.astype(np.float64, copy=False)
    if f.ndim < 2:
        raise DownpourError(f"rapsd: fields must be (..., y, x), got shape {f.shape}")
    m, n = f.shape[-2:]
    lead = f.shape[:-2]
    f = _filled(f, mask, fill_value).reshape(-1, m, n)
    spec = np.fft.fftshift(np.fft.fft2(f), axes=(-2, -1))
    psd = (spec.real**2 + spec.imag**2) / (m * n)
    rings, n_rings = ring_index((m, n))
    k = f.shape[0]
    idx = (rings.ravel()[None, :] + (n_rings + 1) * np.arange(k)[:, None]).ravel()
    sums = np.bincount(idx, weights=psd.reshape(-1), minlength=k * (n_rings + 1))
    cells = np.bincount(rings.ravel(), minlength=n_rings + 1)
    power = sums.reshape(k, n_rings + 1)[:, :n_rings] / cells[:n_rings]
    if normalize:
        power = power / power.sum(axis=1, keepdims=True)
    freq = np.arange(n_rings) / (max(m, n) * d)
    return freq, power.reshape(*lead, n_rings)


def mean_rapsd(
    fields: Any,
    *,
    mask: Any = None,
    fill_value: float | str = 0.0,
    d: float = 1.0,
    normalize: bool = False,
    batch: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean RAPSD over a stack of fields, computed ``batch`` fields at a time.

    Parameters
    ----------
    fields
        Stack ``(N, m, n)``: numpy, or an xarray/dask array (sliced and loaded
        one batch at a time).
    mask, fill_value, d, normalize
        As in :func:`rapsd` (``normalize`` applies to each field before averaging).
    batch
        Fields per FFT batch.

    Returns
    -------
    freq
        ``(R,)`` frequencies.
    power
        ``(R,)`` mean of the fields' spectra.
    """
    total = len(fields)
    if total == 0 or np.ndim(fields) != 3:
        raise DownpourError(
            f"mean_rapsd: need a non-empty stack (N, y, x), got shape {np.shape(fields)}"
        )
    acc: np.ndarray | None = None
    freq = np.zeros(0)
    for i in range(0, total, max(1, batch)):
        chunk = fields[i : i + batch]
        if not hasattr(chunk, "detach") and hasattr(chunk, "values"):  # xarray: load
            chunk = chunk.values
        freq, power = rapsd(chunk, mask=mask, fill_value=fill_value, d=d, normalize=normalize)
        s = power.sum(axis=0)
        acc = s if acc is None else acc + s
    assert acc is not None
    return freq, acc / total


def rapsd_ratio(
    freq: np.ndarray, real: np.ndarray, generated: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Power ratio generated / real at each wavelength of two mean spectra.

    Parameters
    ----------
    freq
        ``(R,)`` frequencies of :func:`rapsd` (cycles per unit of ``d``),
        starting with the zero frequency.
    real, generated
        ``(R,)`` mean power of the real and of the generated fields on the
        same grid and mask.

    Returns
    -------
    wavelength
        ``(R',)`` ``1 / freq`` for the non-zero frequencies (units of ``d``,
        cells by default), longest first.
    ratio
        ``(R',)`` ``generated / real``; NaN where the real power is 0.

    Examples
    --------
    >>> w, r = rapsd_ratio(np.array([0.0, 0.25, 0.5]), np.array([9.0, 2.0, 4.0]),
    ...                    np.array([1.0, 3.0, 4.0]))
    >>> w.tolist(), r.tolist()
    ([4.0, 2.0], [1.5, 1.0])
    """
    f = np.asarray(freq, dtype=np.float64)
    p_real = np.asarray(real, dtype=np.float64)
    p_gen = np.asarray(generated, dtype=np.float64)
    if not f.shape == p_real.shape == p_gen.shape or f.ndim != 1:
        raise DownpourError(
            f"rapsd_ratio: freq, real and generated must be equal 1-D shapes, got "
            f"{f.shape}, {p_real.shape}, {p_gen.shape}"
        )
    keep = f > 0
    pr, pg = p_real[keep], p_gen[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(pr > 0, pg / np.where(pr > 0, pr, 1.0), np.nan)
    return 1.0 / f[keep], ratio


def _band_label(low: float, high: float) -> str:
    return f">={low:g}" if np.isinf(high) else f"{low:g}-{high:g}"


def ratio_summary(
    wavelength: np.ndarray,
    ratio: np.ndarray,
    *,
    bands: tuple[tuple[float, float], ...] = RATIO_BANDS,
    factor: float = 1.5,
    min_wavelength: float = 3.0,
) -> dict[str, Any]:
    """Summarise a spectral ratio by wavelength band.

    Parameters
    ----------
    wavelength
        ``(R,)`` wavelengths (cells), e.g. from :func:`rapsd_ratio`.
    ratio
        ``(R,)`` power ratio generated / real (NaN: undefined, left out).
    bands
        ``[low, high)`` wavelength bands; a band is labelled ``"low-high"``
        (``">=low"`` when ``high`` is infinite).
    factor
        A ratio within ``[1/factor, factor]`` counts as matching.
    min_wavelength
        Only wavelengths ``>= min_wavelength`` enter ``min``, ``max`` and
        ``share_within_factor`` (the shortest ones are close to the grid's
        Nyquist limit).

    Returns
    -------
    dict
        ``bands``: ``{label: arithmetic mean ratio over the band, None when no
        wavelength falls in it}``; ``min``, ``max``: extreme ratios over
        wavelengths ``>= min_wavelength``; ``share_within_factor``: share of
        those wavelengths with ``1/factor <= ratio <= factor``; ``n_wavelengths``
        (how many entered), ``factor``, ``min_wavelength``. Values are None
        when no wavelength qualifies.

    Examples
    --------
    >>> s = ratio_summary(np.array([40.0, 20.0, 10.0, 5.0]), np.array([1.0, 2.0, 0.5, 0.6]))
    >>> s["bands"]["32-64"], s["bands"]["4-8"], s["share_within_factor"]
    (1.0, 0.6, 0.25)
    """
    w = np.asarray(wavelength, dtype=np.float64)
    r = np.asarray(ratio, dtype=np.float64)
    ok = np.isfinite(r)
    out_bands: dict[str, float | None] = {}
    for low, high in bands:
        sel = ok & (w >= low) & (w < high)
        out_bands[_band_label(low, high)] = float(r[sel].mean()) if sel.any() else None
    sel = ok & (w >= min_wavelength)
    rs = r[sel]
    within = (rs >= 1.0 / factor) & (rs <= factor)
    return {
        "bands": out_bands,
        "min": float(rs.min()) if rs.size else None,
        "max": float(rs.max()) if rs.size else None,
        "share_within_factor": float(within.mean()) if rs.size else None,
        "n_wavelengths": int(rs.size),
        "factor": float(factor),
        "min_wavelength": float(min_wavelength),
    }
