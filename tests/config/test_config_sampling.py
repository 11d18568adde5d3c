"""The sampling section: ``sampling.period`` text and order."""

import datetime as dt

import pytest

from downpour.config import SamplingConfig


def test_period_text():
    parse = SamplingConfig.parse_period
    assert parse("2001-01-01:2001-06-30") == (dt.date(2001, 1, 1), dt.date(2001, 6, 30))
    assert parse("2001:2003") == (dt.date(2001, 1, 1), dt.date(2003, 12, 31))
    assert parse("2000-02:2000-02") == (dt.date(2000, 2, 1), dt.date(2000, 2, 29))
    assert SamplingConfig(period="2001-03:2001-04").period == (
        dt.date(2001, 3, 1),
        dt.date(2001, 4, 30),
    )
    with pytest.raises(ValueError, match="must be START:END"):
        parse("2001-01-01")
    with pytest.raises(ValueError, match="starts after it ends"):
        SamplingConfig(period="2002:2001")
