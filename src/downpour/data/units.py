"""CF precipitation units → mm/day or mm/h.

Accepted: fluxes (``kg m-2 s-1``, ``mm/s``), rates (``mm/h``, ``mm h-1``,
``mm/day``, ``mm d-1``), and amounts per time step (``m``, ``mm``,
``kg m-2``), the latter divided by the step length of the time axis. Unit
strings are parsed into base units and exponents, so ``kg m^-2 s^-1``,
``kg/m2/s`` and ``kg m**-2 s**-1`` all mean the same.

Examples
--------
>>> conversion_factor("kg m-2 s-1", "mm/day")
86400.0
>>> conversion_factor("m", "mm/day", step_hours=24.0)
1000.0
"""

from __future__ import annotations

import re

from downpour.core.errors import DownpourError

__all__ = ["ACCEPTED_UNITS", "conversion_factor", "is_amount", "parse_units"]

ACCEPTED_UNITS = "kg m-2 s-1, mm/s, mm/h, mm/day (mm d-1), m, mm or kg m-2 (per time step)"

_LENGTH_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
_TIME_H = {
    "s": 1 / 3600,
    "sec": 1 / 3600,
    "second": 1 / 3600,
    "min": 1 / 60,
    "minute": 1 / 60,
    "h": 1.0,
    "hr": 1.0,
    "hour": 1.0,
    "d": 24.0,
    "day": 24.0,
}
_TARGET_PER_H = {"mm/h": 1.0, "mm/day": 24.0}
_TOKEN = re.compile(r"^([a-z]+?)(?:\^|\*\*)?([-+]?\d+)?$")


def parse_units(units: str) -> dict[str, int]:
    """Parse a unit string into base units and integer exponents.

    Parameters
    ----------
    units
        A CF-style unit string, e.g. ``"kg m-2 s-1"``, ``"mm/day"``, ``"kg m^-2"``.

    Returns
    -------
    dict
        Base unit → exponent, e.g. ``{"kg": 1, "m": -2, "s": -1}``.

    Raises
    ------
    ValueError
        If a part of the string is not ``name[exponent]``.
    """
    text = units.strip().lower().replace("·", " ").replace(".", " ").replace("*", "**")
    text = re.sub(r"\*{3,}", "**", text)
    text = re.sub(r"\s*(\^|\*\*)\s*", r"\1", text)
    out: dict[str, int] = {}
    sign = 1
    for part in re.split(r"\s*(/)\s*|\s+", text):
        if part is None or part == "":
            continue
        if part == "/":
            sign = -1
            continue
        m = _TOKEN.match(part)
        if m is None:
            raise ValueError(f"cannot read unit part {part!r}")
        name, exp = m.group(1), int(m.group(2) or 1)
        name = {"days": "day", "hours": "hour", "hrs": "hr", "secs": "sec"}.get(name, name)
        if name in ("kgm", "kgs"):
            raise ValueError(f"cannot read unit part {part!r}")
        out[name] = out.get(name, 0) + sign * exp
        sign = 1  # a slash divides by the next factor only: kg/m2/s = (kg / m2) / s
    return {k: v for k, v in out.items() if v != 0}


def _depth_mm(parsed: dict[str, int]) -> tuple[float, dict[str, int]]:
    """Return (mm of water per unit, remaining units) for a length or mass/area."""
    rest = dict(parsed)
    if rest.get("kg") == 1 and rest.get("m") == -2:
        rest.pop("kg")
        rest.pop("m")
        return 1.0, rest  # 1 kg m-2 of water = 1 mm
    lengths = [k for k in rest if k in _LENGTH_MM and rest[k] == 1]
    if len(lengths) == 1:
        return _LENGTH_MM[lengths[0]], {k: v for k, v in rest.items() if k != lengths[0]}
    raise ValueError("not a water depth")


def is_amount(units: str) -> bool:
    """Return True when ``units`` is an amount per time step (no time in it)."""
    _, rest = _depth_mm(parse_units(units))
    return not rest


def conversion_factor(
    units: str,
    target: str = "mm/day",
    step_hours: float | None = None,
    where: str = "",
    key: str = "'units:' for this variable",
) -> float:
    """Return the factor that converts values in ``units`` to ``target``.

    Parameters
    ----------
    units
        Units of the data (the ``units`` attribute, or the config override).
    target
        ``"mm/day"`` or ``"mm/h"``.
    step_hours
        Length of one time step in hours; needed for amounts per step.
    where
        Description of the variable and file, for error messages.
    key
        The config key that overrides the units, named in error messages.

    Returns
    -------
    float
        Multiply the data by this to get ``target``.

    Raises
    ------
    DownpourError
        For units that are not precipitation, or an amount without a step.
    """
    if target not in _TARGET_PER_H:
        raise DownpourError(f"unknown target units {target!r}; use mm/day or mm/h")
    try:
        mm, rest = _depth_mm(parse_units(units))
    except ValueError:
        raise DownpourError(
            f"{where}: unknown precipitation units {units!r}; accepted: {ACCEPTED_UNITS}. "
            f"If the file's units attribute is wrong, set {key} in the config"
        ) from None
    if not rest:
        if step_hours is None or step_hours <= 0:
            raise DownpourError(
                f"{where}: units {units!r} are an amount per time step, but the step length "
                "cannot be read from the time axis (one time step, or irregular steps); "
                "give the rate units instead with 'units:' in the config"
            )
        return mm * _TARGET_PER_H[target] / step_hours
    if len(rest) == 1:
        ((name, exp),) = rest.items()
        if exp == -1 and name in _TIME_H:
            return mm / _TIME_H[name] * _TARGET_PER_H[target]
    raise DownpourError(
        f"{where}: unknown precipitation units {units!r}; accepted: {ACCEPTED_UNITS}. "
        f"If the file's units attribute is wrong, set {key} in the config"
    )
