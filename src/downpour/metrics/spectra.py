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

__all__ = ["mean_rapsd", "rapsd", "ring_index"]


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
