from __future__ import annotations

import pytest

from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.training.schedules import KL_SCHEDULES, kl_weight


def _w(epoch: float, schedule: str, beta: float = 1.0, **kw: int) -> float:
    params = {"warmup_epochs": 20, "cycle_period": 30, "cycle_drop": 10} | kw
    return kl_weight(epoch, beta=beta, schedule=schedule, **params)


def test_registry_lists_the_three_schedules():
    assert KL_SCHEDULES.names() == ["constant", "cyclical", "linear"]


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(
        DownpourError,
        match=r"unknown KL schedule 'cosine'; valid names: "
        r"constant, cyclical, linear",
    ):
        _w(3, "cosine")


@pytest.mark.parametrize("epoch", [0, 0.5, 7, 20, 299.25])
def test_constant(epoch):
    assert _w(epoch, "constant", beta=0.005) == 0.005


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [(0, 0.0), (2.5, 0.125), (5, 0.25), (10, 0.5), (19, 0.95), (20, 1.0), (35, 1.0), (300, 1.0)],
)
def test_linear_warmup(epoch, expected):
    assert _w(epoch, "linear") == expected


def test_linear_scales_with_beta_and_zero_warmup_is_beta_at_once():
    assert _w(10, "linear", beta=0.01) == 0.005  # 0.01 · 10/20
    assert _w(0, "linear", beta=0.01, warmup_epochs=0) == 0.01
    assert _w(0.3, "linear", beta=0.01, warmup_epochs=0) == 0.01


# warm-up 20, period 30, drop 10 (preset v4): ramp 0→β over [0, 20); then each period of 30
# epochs holds β for 20 epochs, drops to 0 and climbs back over the last 10:
# t = (e − 20) mod 30, w = β if t < 20 else β·(t − 20)/10.
CYCLICAL = [
    (0, 0.0),
    (5, 0.25),
    (10, 0.5),
    (19, 0.95),
    (20, 1.0),
    (30, 1.0),
    (39, 1.0),
    (39.75, 1.0),
    (40, 0.0),  # the drop
    (40.5, 0.05),  # fractional (per-step) epochs
    (42.5, 0.25),
    (45, 0.5),
    (49, 0.9),
    (50, 1.0),
    (69, 1.0),
    (70, 0.0),
    (75, 0.5),
    (80, 1.0),
]


@pytest.mark.parametrize(("epoch", "expected"), CYCLICAL)
def test_cyclical_v4_values(epoch, expected):
    assert _w(epoch, "cyclical") == expected


def test_cyclical_from_the_v4_preset_config():
    lc = load_config("cvae_v4_phase3").loss
    assert (lc.kl_schedule, lc.kl_warmup_epochs, lc.kl_cycle_period, lc.kl_cycle_drop) == (
        "cyclical",
        20,
        30,
        10,
    )

    def w(e: float) -> float:
        return kl_weight(
            e,
            beta=lc.beta_kl,
            schedule=lc.kl_schedule,
            warmup_epochs=lc.kl_warmup_epochs,
            cycle_period=lc.kl_cycle_period,
            cycle_drop=lc.kl_cycle_drop,
        )

    assert lc.beta_kl == 0.005
    assert [w(e) for e in (10, 20, 25, 40, 45, 50)] == [0.0025, 0.005, 0.005, 0.0, 0.0025, 0.005]


def test_cyclical_demo_short_cycle():
    # warm-up 2, period 4, drop 1: t = (e − 2) mod 4, w = 1 if t < 3 else t − 3
    got = [
        _w(e, "cyclical", warmup_epochs=2, cycle_period=4, cycle_drop=1)
        for e in (0, 1, 2, 2.5, 4, 5, 5.25, 6, 9)
    ]
    assert got == [0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.25, 1.0, 0.0]


def test_cyclical_without_drop_is_linear_warmup():
    for e in (0, 10, 20, 50, 51.5, 200):
        assert _w(e, "cyclical", cycle_drop=0) == _w(e, "linear")


def test_cyclical_without_warmup_starts_at_full_weight():
    assert [_w(e, "cyclical", warmup_epochs=0) for e in (0, 19, 20, 25, 30)] == [
        1.0,
        1.0,
        0.0,
        0.5,
        1.0,
    ]


def test_bad_arguments():
    with pytest.raises(ValueError, match="epoch"):
        _w(-1, "linear")
    with pytest.raises(ValueError, match="cycle_drop"):
        _w(30, "cyclical", cycle_period=5, cycle_drop=10)
    # the cycle is only checked by the schedule that uses it
    assert _w(30, "linear", cycle_period=5, cycle_drop=10) == 1.0


def test_returns_python_float():
    assert type(_w(3, "linear")) is float
