"""KL weight schedules: constant, linear warm-up, cyclical.

See docs/models.md#losses and docs/presets.md#presets.

Every schedule maps a (possibly fractional) epoch to the KL weight β of that
step, so the same function serves per-epoch and per-step schedules
(``epoch = current_epoch + step_in_epoch / steps_per_epoch``). Schedules are
registered in :data:`KL_SCHEDULES`; an unknown name raises an error listing
the valid ones.

Examples
--------
>>> kl_weight(10, beta=0.01, schedule="linear", warmup_epochs=20, cycle_period=30, cycle_drop=10)
0.005
>>> kl_weight(45, beta=1.0, schedule="cyclical", warmup_epochs=20, cycle_period=30, cycle_drop=10)
0.5
"""

from __future__ import annotations

from typing import Protocol

from downpour.core.registry import Registry

__all__ = ["KL_SCHEDULES", "KLSchedule", "kl_weight"]


class KLSchedule(Protocol):
    """Signature of a registered schedule."""

    def __call__(
        self,
        epoch: float,
        *,
        beta: float,
        warmup_epochs: int,
        cycle_period: int,
        cycle_drop: int,
    ) -> float:
        """Return the KL weight at ``epoch``."""
        ...


#: Registered KL schedules, by name (the values of ``loss.kl_schedule``).
KL_SCHEDULES: Registry[KLSchedule] = Registry("KL schedule")


def _ramp(epoch: float, beta: float, length: float) -> float:
    """``beta · min(1, epoch / length)``; ``beta`` at once when ``length == 0``."""
    if length <= 0:
        return beta
    return beta * min(1.0, epoch / length)


@KL_SCHEDULES.register("constant")
def constant(
    epoch: float, *, beta: float, warmup_epochs: int, cycle_period: int, cycle_drop: int
) -> float:
    """``β`` at every epoch."""
    return beta


@KL_SCHEDULES.register("linear")
def linear(
    epoch: float, *, beta: float, warmup_epochs: int, cycle_period: int, cycle_drop: int
) -> float:
    """Linear warm-up: ``β · min(1, epoch / warmup_epochs)`` (``β`` at once if 0 epochs)."""
    return _ramp(epoch, beta, warmup_epochs)


@KL_SCHEDULES.register("cyclical")
def cyclical(
    epoch: float, *, beta: float, warmup_epochs: int, cycle_period: int, cycle_drop: int
) -> float:
    """Linear warm-up, then a periodic drop to 0 and linear re-warm (Fu et al. 2019).

    For ``epoch < warmup_epochs``: ``β · epoch / warmup_epochs``. Afterwards,
    with ``t = (epoch − warmup_epochs) mod cycle_period`` and ``k =
    cycle_period − cycle_drop``: ``β`` while ``t < k``, then the weight drops
    to 0 and climbs back linearly over the last ``cycle_drop`` epochs of the
    period, ``β · (t − k) / cycle_drop`` (letting the encoder re-explore
    before the next period at full weight). This reads docs/presets.md#presets
    "warm-up 20, then every 30 epochs drop for 10" literally. ``cycle_drop =
    0`` gives plain linear warm-up.

    With ``warmup_epochs=20, cycle_period=30, cycle_drop=10`` (preset v4):

    ======  ==========================================
    epoch   weight
    ======  ==========================================
    0       0
    10      β/2
    19      0.95 β
    20–39   β
    40      0   (drop)
    45      β/2
    50–69   β
    70      0   (and so on every 30 epochs)
    ======  ==========================================
    """
    if cycle_period < 1 or not 0 <= cycle_drop <= cycle_period:
        raise ValueError(
            "cyclical KL schedule needs cycle_period ≥ 1 and 0 ≤ cycle_drop ≤ cycle_period, "
            f"got period {cycle_period}, drop {cycle_drop}"
        )
    if epoch < warmup_epochs:
        return _ramp(epoch, beta, warmup_epochs)
    t = (epoch - warmup_epochs) % cycle_period
    full = cycle_period - cycle_drop
    return beta if t < full else _ramp(t - full, beta, cycle_drop)


def kl_weight(
    epoch: float,
    *,
    beta: float,
    schedule: str,
    warmup_epochs: int,
    cycle_period: int,
    cycle_drop: int,
) -> float:
    """KL weight at ``epoch`` under the named schedule.

    Parameters
    ----------
    epoch
        Epoch, counted from 0; fractional for per-step schedules.
    beta
        Target (maximum) weight, ``loss.beta_kl``.
    schedule
        ``"constant"``, ``"linear"`` or ``"cyclical"`` (:data:`KL_SCHEDULES`).
    warmup_epochs
        Length of the linear warm-up from 0 to ``beta`` (linear, cyclical).
    cycle_period, cycle_drop
        Cyclical only: period of the cycles after warm-up, and the number of
        epochs at the start of each period during which the weight re-warms
        from 0 (``0 ≤ cycle_drop ≤ cycle_period``).

    Returns
    -------
    float
        The weight, in ``[0, beta]``.

    Raises
    ------
    DownpourError
        For an unknown schedule name (the message lists the valid ones).
    ValueError
        For a negative epoch, beta or warm-up, or (cyclical) an inconsistent cycle.
    """
    fn = KL_SCHEDULES.get(schedule)
    if epoch < 0:
        raise ValueError(f"epoch must be ≥ 0, got {epoch}")
    if beta < 0 or warmup_epochs < 0:
        raise ValueError(f"beta and warmup_epochs must be ≥ 0, got {beta}, {warmup_epochs}")
    return float(
        fn(
            epoch,
            beta=beta,
            warmup_epochs=warmup_epochs,
            cycle_period=cycle_period,
            cycle_drop=cycle_drop,
        )
    )
