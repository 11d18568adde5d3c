"""Inclusive date ranges (``--period START:END``) and the days of an array inside one.

Each end of ``START:END`` is ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``; a year
or month start is its first day, a year or month end its last, and both ends
are included.

Examples
--------
>>> parse_dates("2001-02:2003")
(datetime.date(2001, 2, 1), datetime.date(2003, 12, 31))
>>> parse_period("2002-01:2002-06")
(np.datetime64('2002-01-01'), np.datetime64('2002-06-30'))
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from downpour.core.errors import DownpourError

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["parse_dates", "parse_period", "select_period"]


def parse_dates(text: str) -> tuple[dt.date, dt.date]:
    """Parse ``START:END`` (inclusive); each end ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``.

    A year or month start is its first day, a year or month end its last.

    Raises
    ------
    ValueError
        When ``text`` is not such a range (the message shows the expected form).
    """

    def one(part: str, end: bool) -> dt.date:
        m = re.fullmatch(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?", part.strip())
        if m is None:
            raise ValueError(f"{part!r} is not a date")
        y, mo, d = int(m[1]), int(m[2] or (12 if end else 1)), m[3]
        if d is not None:
            return dt.date(y, mo, int(d))
        if not end:
            return dt.date(y, mo, 1)
        return (dt.date(y, mo, 28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(1)

    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError("no ':' between start and end")
        return one(start, False), one(stop, True)
    except ValueError as exc:
        raise ValueError(
            f"period {text!r} must be START:END with YYYY, YYYY-MM or YYYY-MM-DD ends, "
            f"e.g. 2001-01-01:2001-06-30 or 2001:2003 ({exc})"
        ) from None


def parse_period(period: str | Sequence[Any]) -> tuple[np.datetime64, np.datetime64]:
    """First and last day of an inclusive date range ``"START:END"`` (or a pair of dates).

    The text form is that of ``downpour sample --period`` (:func:`parse_dates`).

    Raises
    ------
    DownpourError
        For text that is no such range, dates that are no dates, or a range
        that ends before it starts.
    """
    try:
        if isinstance(period, str):
            start, end = (np.datetime64(d, "D") for d in parse_dates(period))
        else:
            first, last = period
            start, end = np.datetime64(str(first), "D"), np.datetime64(str(last), "D")
    except (ValueError, TypeError) as e:
        raise DownpourError(f"--period: {e}") from None
    if end < start:
        raise DownpourError(f"--period: the period starts after it ends ({start} > {end})")
    return start, end


def select_period(da: xr.DataArray, period: str | Sequence[Any], what: str) -> xr.DataArray:
    """Days of ``da`` (dim ``time``) in an inclusive date range; an error when there is none.

    Parameters
    ----------
    da
        ``(time, ...)`` array.
    period
        ``"START:END"`` (dates, both included) or a ``(start, end)`` pair.
    what
        Names the days in the error message, e.g. ``"test days of RUN/data/store.zarr"``.
    """
    start, end = parse_period(period)
    days = np.asarray(da["time"].values).astype("datetime64[D]")
    keep = (days >= start) & (days <= end)
    if not keep.any():
        span = f"{days.min()} to {days.max()}" if days.size else "no days"
        raise DownpourError(
            f"period {start}:{end} holds none of the {days.size} {what} (they cover {span}); "
            "choose dates inside that range"
        )
    return da.isel(time=np.flatnonzero(keep))
