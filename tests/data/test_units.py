import pytest

from downpour.core.errors import DownpourError
from downpour.data.units import conversion_factor, is_amount, parse_units


@pytest.mark.parametrize(
    ("units", "target", "step", "factor"),
    [
        ("kg m-2 s-1", "mm/day", None, 86400.0),  # 1 kg/m²/s of water = 1 mm/s = 86 400 mm/day
        ("kg m-2 s-1", "mm/h", None, 3600.0),
        ("kg/m2/s", "mm/day", None, 86400.0),
        ("kg m^-2 s^-1", "mm/day", None, 86400.0),
        ("kg m**-2 s**-1", "mm/day", None, 86400.0),
        ("mm/day", "mm/day", None, 1.0),
        ("mm d-1", "mm/day", None, 1.0),
        ("mm day-1", "mm/h", None, 1.0 / 24.0),
        ("mm/h", "mm/day", None, 24.0),
        ("mm h-1", "mm/h", None, 1.0),
        ("mm hr-1", "mm/day", None, 24.0),
        ("mm/s", "mm/h", None, 3600.0),
        ("m", "mm/day", 24.0, 1000.0),  # ERA5 daily totals in metres
        ("m", "mm/h", 1.0, 1000.0),  # ERA5 hourly totals in metres
        ("m", "mm/day", 1.0, 24000.0),
        ("mm", "mm/day", 6.0, 4.0),  # 6-hourly amounts
        ("kg m-2", "mm/h", 1.0, 1.0),  # Stage IV hourly accumulation
        ("kg m^-2", "mm/day", 1.0, 24.0),
        ("kg m-2", "mm/day", 24.0, 1.0),
    ],
)
def test_conversion_factor(units, target, step, factor):
    assert conversion_factor(units, target, step) == pytest.approx(factor, rel=1e-12)


def test_parse_units():
    assert parse_units("kg m-2 s-1") == {"kg": 1, "m": -2, "s": -1}
    assert parse_units("kg/m2/s") == {"kg": 1, "m": -2, "s": -1}
    assert parse_units("mm/day") == {"mm": 1, "day": -1}


def test_amount_detection():
    assert is_amount("m") and is_amount("kg m-2") and is_amount("mm")
    assert not is_amount("mm/day") and not is_amount("kg m-2 s-1")


@pytest.mark.parametrize("units", ["degC", "K", "1", "kg kg-1", "mm2", "m s-2", "W m-2", ""])
def test_unknown_units_are_errors(units):
    with pytest.raises(DownpourError, match="unknown precipitation units") as e:
        conversion_factor(units, "mm/day", 24.0, where="variable 'pr' in f.nc")
    assert "variable 'pr' in f.nc" in str(e.value) and "units:" in str(e.value)


def test_amount_without_step_is_an_error():
    with pytest.raises(DownpourError, match="amount per time step"):
        conversion_factor("kg m-2", "mm/day", None, where="v")
