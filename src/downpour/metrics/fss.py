"""Fractions skill score sums from exact integer window counts.

Definitions: docs/metrics.md#downscaling-verification.

The FSS of Roberts & Lean (2008), as pysteps computes it, smooths the 0/1
event fields of prediction and truth with a square moving average of ``s × s``
cells (``scipy.ndimage.uniform_filter(size=s, mode="constant", cval=0)``:
zero padding at the domain edge) and compares the two fraction fields. The
fractions are window *counts* divided by ``s²``, so every sum FSS needs is an
integer divided by ``s⁴``; this module computes those integers exactly.

Window alignment (that of ``uniform_filter`` with ``origin=0``, odd or even
``s``): the window of cell ``i`` along an axis covers cells
``i − s//2 … i − s//2 + s − 1``, clipped to the domain (cells beyond the edge
count as 0). For odd ``s`` it is centred; for even ``s`` it has one cell more
before ``i`` than after.

Method
------
1. The event fields of a batch (two per threshold: prediction and truth) are
   packed into the 16-bit lanes of one ``uint64`` per cell, four fields per
   word (32-bit lanes, two per word, when a window holds 65,536 cells or more).
2. One summed-area table of the packed words (cumulative sums along ``x``,
   then along ``y``, in ``uint64``) gives, with two differences per scale,
   the window counts of all four fields at once. The sums wrap modulo 2⁶⁴,
   but a window count is a linear combination of table entries and each
   lane's count lies in ``[0, 2¹⁶)``, so the lanes of the result are exact.
3. The counts are zeroed at invalid cells (one multiply per word), unpacked to
   ``int32`` and reduced per day: ``ΣWf²``, ``ΣWo²`` and ``ΣWf·Wo``, from which
   ``Σ(Pf − Po)² = (ΣWf² + ΣWo² − 2ΣWf·Wo) / s⁴``, ``ΣPf² = ΣWf² / s⁴`` and
   ``ΣPo² = ΣWo² / s⁴`` (the integers are exact; the division rounds once).

Scale 1 needs no window: its sums are the contingency counts
(``b + c``, ``a + b``, ``a + c``).

Layout: numpy runs one long contiguous operation several times faster than
the same work split into short rows, and ``cumsum`` along a non-last axis
slower still. So the cumulative sums and the window differences run over the
*flattened* array (the sums are not restarted at each row; this adds to every
table entry a term that depends on one coordinate only, which cancels in each
window count), the ``y`` sums run on a transposed copy, and the counts come
out in ``(day, x, y)`` order with one unused row and column; only the edge
cells of each window (``s − 1`` per axis) need a gather.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fss_day_sums", "window_counts", "window_extent"]

_INT32_MAX = 2**31 - 1


def window_extent(scale: int) -> tuple[int, int]:
    """Cells before and after a cell in its window of ``scale`` cells along one axis.

    ``(scale // 2, scale - 1 - scale // 2)``: the alignment of
    ``scipy.ndimage.uniform_filter`` with ``origin=0``.
    """
    before = scale // 2
    return before, scale - 1 - before


def _box(table: np.ndarray, axis: int, scale: int) -> np.ndarray:
    """Window sums along ``axis`` (1 or 2) of a prefix table ``(days, X, Y)``.

    Along ``axis`` the table holds ``n + 1`` prefix entries (entry ``k``: the
    cells before ``k``, plus a term that is constant along ``axis``), and
    ``out[i] = table[min(i + after + 1, n)] − table[max(i − before, 0)]`` for
    ``i < n``; entry ``n`` of ``out`` is left undefined. The cells whose
    window lies inside the domain take one subtraction of the flattened array
    (no per-row loop in numpy), the ``scale − 1`` edge cells a gather.
    """
    n = table.shape[axis] - 1
    before, after = window_extent(scale)
    step = table.shape[2] if axis == 1 else 1  # flat distance of one cell along axis
    out = np.empty_like(table)
    flat_in, flat_out = table.reshape(-1), out.reshape(-1)
    lo, hi = before * step, (after + 1) * step
    if flat_in.size > lo + hi:
        np.subtract(flat_in[lo + hi :], flat_in[: flat_in.size - lo - hi],
                    out=flat_out[lo : flat_out.size - hi])  # fmt: skip
    first, last = min(before, n), max(n - after, min(before, n))  # cells with an inner window
    edge = np.concatenate([np.arange(first), np.arange(last, n)])
    if edge.size:
        up, down = np.minimum(edge + after + 1, n), np.maximum(edge - before, 0)
        where = (slice(None),) * axis + (edge,)
        out[where] = np.take(table, up, axis=axis) - np.take(table, down, axis=axis)
    return out


def _lane_bits(scales: Sequence[int], ny: int, nx: int) -> int:
    """16 when every window count fits 16 bits, else 32."""
    largest = max(min(s, ny) * min(s, nx) for s in scales)
    return 16 if largest < 2**16 else 32


def _lane_type(bits: int) -> type[np.unsignedinteger]:
    return np.uint16 if bits == 16 else np.uint32


def _packed_table(fields: Sequence[np.ndarray], bits: int) -> np.ndarray:
    """Summed-area table ``(days, x + 1, y + 1)`` of 0/1 fields packed in ``bits``-bit lanes.

    Entry ``[d, c, r]`` is the count of events at ``x < c, y < r`` of day ``d``
    plus terms that depend on ``(d, r)`` only or on ``(d, c)`` only (the
    cumulative sums run over the flattened array, not row by row); such terms
    cancel in every window count.
    """
    days, ny, nx = fields[0].shape
    per_word = 64 // bits
    lanes = np.zeros((days, ny, nx + 1, per_word), dtype=bool)  # x = 0: a zero column
    pad = [np.zeros((days, ny, nx), dtype=bool)] * (per_word - len(fields))
    np.stack([*fields, *pad], axis=-1, out=lanes[:, :, 1:])
    rows = lanes.view(np.uint8).astype(_lane_type(bits)).view(np.uint64)[..., 0]
    np.cumsum(rows.reshape(-1), out=rows.reshape(-1))  # prefix along x
    table = np.empty((days, nx + 1, ny + 1), dtype=np.uint64)
    table[:, :, 0] = 0  # y = 0: a zero row
    table[:, :, 1:] = rows.transpose(0, 2, 1)
    np.cumsum(table.reshape(-1), out=table.reshape(-1))  # prefix along y
    return table


def window_counts(fields: Sequence[np.ndarray], scale: int) -> list[np.ndarray]:
    """Event counts in the ``scale × scale`` window of every cell (zero padding).

    Parameters
    ----------
    fields
        Boolean (or 0/1) arrays ``(days, y, x)`` of one shape.
    scale
        Window size in cells (odd or even; see the module docstring for the
        alignment).

    Returns
    -------
    list of numpy.ndarray
        One int64 array ``(days, y, x)`` per field: the counts equal
        ``uniform_filter(f, size=(1, scale, scale), mode="constant") · scale²``.

    Examples
    --------
    >>> f = np.zeros((1, 3, 4), bool)
    >>> f[0, 1, 1] = True
    >>> window_counts([f], 2)[0][0].tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    """
    days, ny, nx = np.shape(fields[0])
    bits = _lane_bits([scale], ny, nx)
    per_word = 64 // bits
    out = []
    for g in range(0, len(fields), per_word):
        group = [np.asarray(f, dtype=bool) for f in fields[g : g + per_word]]
        w = _box(_box(_packed_table(group, bits), 2, scale), 1, scale)
        lanes = w.view(_lane_type(bits)).reshape(days, nx + 1, ny + 1, per_word)
        out += [
            lanes[:, :nx, :ny, k].transpose(0, 2, 1).astype(np.int64) for k in range(len(group))
        ]
    return out


def _row_products(q: np.ndarray, largest: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-day ``Σq_k²`` of every lane and ``Σq_{2j}·q_{2j+1}`` of every pair.

    ``q`` is ``(lanes, days, x, y)``; int32 products are summed per row (exact
    when a row's sum fits int32) and the rows in int64, else everything in float64.
    """
    if q.shape[-1] * largest * largest <= _INT32_MAX:
        sq = np.einsum("kdij,kdij->kdi", q, q).sum(axis=-1, dtype=np.int64)
        cross = np.einsum("kdij,kdij->kdi", q[0::2], q[1::2]).sum(axis=-1, dtype=np.int64)
        return sq, cross
    f = q.astype(np.float64)
    return np.einsum("kdij,kdij->kd", f, f), np.einsum("kdij,kdij->kd", f[0::2], f[1::2])


def fss_day_sums(
    pred_events: Sequence[np.ndarray],
    truth_events: Sequence[np.ndarray],
    valid: np.ndarray,
    scales: Sequence[int],
    counts: np.ndarray,
) -> np.ndarray:
    """Per-day FSS sums ``(Σ(Pf−Po)², ΣPf², ΣPo²)`` of each threshold and scale.

    Parameters
    ----------
    pred_events, truth_events
        One boolean array ``(days, y, x)`` per threshold: the events
        (``value > threshold``) and-ed with ``valid``.
    valid
        Boolean ``(days, y, x)``: cells that count (fractions are kept there
        only; invalid cells hold no event).
    scales
        Window sizes in cells.
    counts
        Int ``(days, thresholds, 4)`` contingency counts ``a, b, c, d`` of the
        same events (they are the scale-1 sums).

    Returns
    -------
    numpy.ndarray
        Float64 ``(days, thresholds, len(scales), 3)``.
    """
    days, ny, nx = valid.shape
    n_thr = len(pred_events)
    out = np.empty((days, n_thr, len(scales), 3))
    a, b, c = (counts[..., k].astype(np.float64) for k in range(3))
    big = [s for s in scales if s > 1]
    for j, s in enumerate(scales):
        if s == 1:
            out[:, :, j] = np.stack([b + c, a + b, a + c], axis=-1)
    if not big:
        return out
    bits = _lane_bits(big, ny, nx)
    per_word = 64 // bits
    valid_t = np.zeros((days, nx + 1, ny + 1), dtype=bool)  # (day, x, y) plus an unused edge
    valid_t[:, :nx, :ny] = valid.transpose(0, 2, 1)
    fields = [f for pair in zip(pred_events, truth_events, strict=True) for f in pair]
    for g in range(0, len(fields), per_word):
        group = fields[g : g + per_word]
        thr = slice(g // 2, (g + len(group)) // 2)
        table = _packed_table(group, bits)
        for j, s in enumerate(scales):
            if s == 1:
                continue
            w = _box(_box(table, 2, s), 1, s)  # (days, x + 1, y + 1) packed counts
            np.multiply(w, valid_t, out=w)
            lanes = w.view(_lane_type(bits)).reshape(*w.shape, per_word)
            largest = min(s, ny) * min(s, nx)
            q = np.empty((len(group), *w.shape), dtype=np.int32 if bits == 16 else np.int64)
            np.copyto(q, lanes[..., : len(group)].transpose(3, 0, 1, 2), casting="unsafe")
            sq, cross = _row_products(q, largest)
            sf, so = sq[0::2].T, sq[1::2].T  # (days, thresholds of the group)
            s4 = float(s) ** 4
            out[:, thr, j, 0] = (sf + so - 2 * cross.T) / s4
            out[:, thr, j, 1] = sf / s4
            out[:, thr, j, 2] = so / s4
    return out
