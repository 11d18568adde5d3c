"""The generator in ``downpour verify``: its prior-mode ensemble as a probabilistic downscaler.

When the run holds a trained cVAE (:func:`find_generator_checkpoint`, the
rule :data:`GENERATOR_RULE`), :func:`accumulate_generator` predicts every
verified day with K prior-mode members, exactly as ``downpour downscale``
does (:func:`~downpour.downscaling.downscalers.cvae_downscaler`: predictors
in physical units, the checkpoint's normalisation, temperature, wet rule and
pixel threshold; the members of a day seeded by ``(sampling.seed, day)``, so
that a day's members do not depend on the period, the batches or the pieces),
and streams them into two accumulators (docs/metrics.md#in-downpour-verify):

- an :class:`~downpour.metrics.ensemble_verification.EnsembleAccumulator`:
  CRPS (ECDF and fair), the ensemble mean's MAE and RMSE, spread–skill ratio,
  rank histogram (ties broken at random per day), and the event probabilities
  ``P(y > P95)``, ``P(y > P99)`` (fraction of members above) scored by Brier
  score, Brier skill score against the **training climatology** (as the
  quantile SRDRN's), ROC area and reliability diagram;
- a :class:`~downpour.metrics.accumulator.VerificationAccumulator` of **every
  member pooled** (:data:`MEMBER_POOLING`): each member is a deterministic
  forecast, and the K members of a day are scored side by side as one field
  ``(K·H, W)`` against the truth repeated K times, so that per day the
  contingency counts and errors are summed over the members. Its CSI, SEDI,
  POD, MAE, ... are those of "a member drawn at random" aggregated over
  members and days, with bootstrap intervals over days (not over members,
  which are not independent); FSS only at scale 1 (a wider window would
  straddle two members) and no GPD tail fit (the domain maximum of K
  members is not a member's).

:func:`score_generator` adds bootstrap intervals and the paired differences
``CRPS − MAE`` against every deterministic model of the verification (each
SRDRN variant, a quantile SRDRN's median head, bicubic, BCSD;
:func:`~downpour.metrics.probabilistic_pairs.paired_crps_difference`, ECDF
and fair CRPS): a deterministic forecast's CRPS is its MAE, so a negative
difference favours the generator.

The three heaviest verified days (truth mean over the mask) keep four members
each (:class:`~downpour.report.ensemble_figures.HeaviestDays`) for the figure
of members beside the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.core.rundir import RunDir
from downpour.downscaling.downscalers import Downscaler
from downpour.downscaling.store import open_store
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.ensemble_verification import EnsembleAccumulator
from downpour.metrics.probabilistic_pairs import paired_crps_difference
from downpour.report.ensemble_figures import HeaviestDays

__all__ = [
    "DEFAULT_MEMBERS",
    "GENERATOR",
    "GENERATOR_RULE",
    "MEMBER_POOLING",
    "GeneratorAccumulators",
    "LoadedGenerator",
    "accumulate_generator",
    "find_generator_checkpoint",
    "load_generator",
    "score_generator",
    "stack_members",
    "verify_generator_days",
]

#: Name of the generator in ``verify.json`` (its block and ``checkpoints``) and the state folder.
GENERATOR = "generator"
#: Members per day when none are given (``verify --members``).
DEFAULT_MEMBERS = 16
#: Which cVAE checkpoint ``verify`` scores by default.
GENERATOR_RULE = (
    "RUN/checkpoints/cvae/best.ckpt (the weights the main job samples the augmentation from), "
    "else last.ckpt"
)
#: How every member is scored as a deterministic forecast (stored with the member scores).
MEMBER_POOLING = (
    "every member as a deterministic forecast, pooled: per day the contingency counts and errors "
    "of the K members are summed (the scores of a member drawn at random); intervals resample "
    "days; FSS at scale 1 only, no GPD tail fit"
)


def find_generator_checkpoint(run: str | Path) -> Path | None:
    """Return the run's cVAE checkpoint by :data:`GENERATOR_RULE`, or None when it has none."""
    rundir = RunDir(run)
    for name in ("best", "last"):
        path = rundir.checkpoint("cvae", name)
        if path.is_file():
            return path
    return None


@dataclass
class LoadedGenerator:
    """The cVAE ready to predict, with the checkpoint it came from and the rule that chose it."""

    model: Downscaler  # predict(x (b, C, h, w), days) -> (b, K, H, W)
    checkpoint: Path
    rule: str  # GENERATOR_RULE or "as given"
    sha256: str
    members: int


def load_generator(
    run: str | Path,
    generator: bool | str | Path,
    store: str | Path,
    members: int,
    device: str | None = None,
) -> LoadedGenerator | None:
    """Load the cVAE as ``downpour downscale`` does, with ``members`` prior-mode members per day.

    Parameters
    ----------
    run
        The run directory.
    generator
        True: the run's cVAE (:func:`find_generator_checkpoint`; None when the
        run has none); False: none; a path: that cVAE checkpoint.
    store
        The real store it is verified on (its grid and predictors must be the checkpoint's).
    members
        Ensemble size K (at least 2), whatever the checkpoint's ``sampling.members``.
    device
        Where to run; default CUDA when available, else CPU.

    Returns
    -------
    LoadedGenerator or None
        None when ``generator`` is False or the run has no cVAE.

    Raises
    ------
    DownpourError
        ``members`` below 2, a missing checkpoint, one that is no cVAE or does
        not fit the store.
    """
    from downpour.downscaling.downscale import _load

    if generator is False:
        return None
    checkpoint = find_generator_checkpoint(run) if generator is True else Path(generator)
    if checkpoint is None:
        return None
    if int(members) < 2:
        raise DownpourError(
            f"verify: --members {members}: the generator's ensemble needs at least 2 members "
            "(spread, fair CRPS and the rank histogram need two)"
        )
    if not checkpoint.is_file():
        raise DownpourError(f"generator checkpoint {checkpoint} not found")
    model, _, _, prov = _load(checkpoint, None, store, None, [f"sampling.members={int(members)}"],
                              1, device)  # fmt: skip
    if model.name != "cvae":
        raise DownpourError(
            f"generator checkpoint {checkpoint} is a {model.name} checkpoint: give the cVAE's "
            "(RUN/checkpoints/cvae/best.ckpt)"
        )
    rule = GENERATOR_RULE if generator is True else "as given"
    return LoadedGenerator(model, checkpoint, rule, str(prov["checkpoint_sha256"]), int(members))


def stack_members(
    members: np.ndarray, truth: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Lay the K members of each day side by side as one field, the truth repeated beside them.

    Parameters
    ----------
    members
        ``(days, K, H, W)``.
    truth
        ``(days, H, W)``.
    mask
        ``(H, W)`` or None.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray or None)
        Members ``(days, K·H, W)``, truth ``(days, K·H, W)`` and mask ``(K·H, W)``.

    Examples
    --------
    >>> m, t, k = stack_members(np.arange(8.0).reshape(1, 2, 2, 2), np.ones((1, 2, 2)), None)
    >>> m.shape, t.shape, k is None
    ((1, 4, 2), (1, 4, 2), True)
    """
    d, k, h, w = members.shape
    stacked = np.ascontiguousarray(members).reshape(d, k * h, w)
    repeated = np.broadcast_to(truth[:, None], members.shape).reshape(d, k * h, w)
    return stacked, repeated, None if mask is None else np.tile(mask, (k, 1))


@dataclass
class GeneratorAccumulators:
    """What :func:`accumulate_generator` streamed: two accumulators, the heaviest days, facts."""

    ensemble: EnsembleAccumulator
    members: VerificationAccumulator
    heaviest: HeaviestDays
    facts: dict[str, Any]


def accumulate_generator(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    predictors: xr.DataArray,
    truth: xr.DataArray,
    mask: np.ndarray,
    thresholds: Mapping[str, float],
    events: Mapping[str, float],
    climatology: Mapping[str, float],
    *,
    members: int,
    seed: int = 0,
    facts: Mapping[str, Any] | None = None,
    batch_days: int = 16,
) -> GeneratorAccumulators:
    """Predict every day of ``truth`` with K members and stream them into the accumulators.

    Parameters
    ----------
    predict
        ``predict(x, days) -> (b, K, H, W)`` from predictors ``(b, C, h, w)`` in
        physical units (:attr:`Downscaler.predict` of :func:`load_generator`).
    predictors
        ``(time, channel, y_lr, x_lr)`` of the same days as ``truth`` (read a batch at a time).
    truth
        ``(time, y, x)``, NaN where missing (read a batch at a time).
    mask
        ``(y, x)`` valid cells.
    thresholds
        Every verification threshold: the pooled members' contingency scores.
    events
        ``{name: threshold}`` of the event probabilities (P95, P99).
    climatology
        ``{name: training base rate}``, the reference of the Brier skill score.
    members
        K, checked against every prediction.
    seed
        Seed of the rank histogram's tie draws (per day, with its time stamp).
    facts
        JSON-ready facts stored with the result (checkpoint, sampling settings).
    batch_days
        Days predicted and accumulated at once.

    Returns
    -------
    GeneratorAccumulators

    Raises
    ------
    DownpourError
        When the predictors cover other days than the truth, or a prediction is
        not ``(b, K, H, W)``.
    """
    times = np.asarray(truth["time"].values)
    pt = np.asarray(predictors["time"].values)
    if pt.shape != times.shape or (pt != times).any():
        raise DownpourError(
            f"generator verification: the predictors cover other days than the truth "
            f"({pt.size} vs {times.size} days)"
        )
    ens = EnsembleAccumulator(events, climatology, mask, seed, members=members)
    pooled = VerificationAccumulator(thresholds, scales=(1,), mask=np.tile(mask, (members, 1)))
    heaviest = HeaviestDays()
    for start in range(0, times.size, batch_days):
        sl = slice(start, start + batch_days)
        x = np.asarray(predictors.isel(time=sl).values, dtype=np.float32)
        t = np.asarray(truth.isel(time=sl).values)
        m = np.asarray(predict(x, times[sl]))
        if m.shape != (t.shape[0], members, *t.shape[1:]):
            raise DownpourError(
                f"generator verification: the generator returned {m.shape} for {t.shape[0]} days; "
                f"expected {(t.shape[0], members, *t.shape[1:])}"
            )
        ens.update(m, t, time=times[sl])
        stacked, repeated, _ = stack_members(m, t, None)
        pooled.update(stacked, repeated, time=times[sl])
        heaviest.update(m, t, times[sl], mask)
    return GeneratorAccumulators(ens, pooled, heaviest, dict(facts or {}))


def verify_generator_days(
    generator: LoadedGenerator,
    store: Path,
    truth: xr.DataArray,
    mask: np.ndarray,
    thresholds: Mapping[str, float],
    events: Mapping[str, float],
    climatology: Mapping[str, float],
    *,
    seed: int,
    echo: Callable[[str], Any] = print,
) -> GeneratorAccumulators:
    """Accumulate the generator's members of the days of ``truth``, predictors read from ``store``.

    Returns
    -------
    GeneratorAccumulators
        With ``facts``: ``checkpoint``, ``checkpoint_rule``, ``checkpoint_sha256``,
        ``members``, ``mode`` (``"prior"``), the checkpoint's sampling settings
        (``seed``, ``temperature``, ``wet_rule``, ``pixel_threshold``,
        ``seeding``), ``events``, ``climatology`` and ``member_pooling``
        (:data:`MEMBER_POOLING`).
    """
    k = generator.members
    facts = {
        "checkpoint": str(generator.checkpoint),
        "checkpoint_rule": generator.rule,
        "checkpoint_sha256": generator.sha256,
        "members": k,
        "mode": "prior",
        **{key: v for key, v in generator.model.attrs.items() if key != "members"},
        "events": dict(events),
        "climatology": dict(climatology),
        "member_pooling": MEMBER_POOLING,
    }
    echo(f"predicting {truth.sizes['time']} days with {k} prior-mode members of the generator "
         f"({generator.checkpoint})")  # fmt: skip
    ds = open_store(store)
    try:
        predictors = ds["predictors"].sel(time=truth["time"].values)
        return accumulate_generator(generator.model.predict, predictors, truth, mask, thresholds,
                                    events, climatology, members=k, seed=seed,
                                    facts=facts)  # fmt: skip
    finally:
        ds.close()


def score_generator(
    ensemble: EnsembleAccumulator,
    members: VerificationAccumulator,
    deterministic: Mapping[str, VerificationAccumulator],
    facts: Mapping[str, Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Score the ``generator`` block of ``verify.json``: scores, intervals, paired CRPS − MAE.

    Parameters
    ----------
    ensemble, members
        The accumulators of :func:`accumulate_generator` (or merged pieces).
    deterministic
        ``{name: VerificationAccumulator}`` of the deterministic models on the same
        days (the extra heads of quantile models, ``"name q0.99"``, are left out).
    facts
        Stored as they are (see :func:`verify_generator_days`).
    n_boot, seed
        Bootstrap resamples (of days) and seed.
    echo
        Where a pair that cannot be compared is reported.

    Returns
    -------
    dict
        ``facts`` plus ``ensemble``
        (:meth:`EnsembleAccumulator.compute_with_intervals`: CRPS ECDF and fair,
        ensemble mean MAE/RMSE, spread, spread–skill, rank histogram, events
        with Brier/BSS/ROC/reliability diagram, intervals), ``member_scores``
        (:meth:`VerificationAccumulator.compute_with_intervals` of the pooled
        members, without GPD) and ``crps_minus_mae[model][estimator]``
        (:func:`paired_crps_difference`, ``estimator`` ``"ecdf"`` or
        ``"fair"``; ``{"error": message}`` when the two were scored on other cells).
    """
    diffs: dict[str, Any] = {}
    for name, acc in deterministic.items():
        if " " in name:
            continue
        try:
            diffs[name] = {
                est: paired_crps_difference(ensemble, acc, estimator=est, n_boot=n_boot, seed=seed)
                for est in ("ecdf", "fair")
            }
        except DownpourError as e:
            echo(f"generator CRPS − {name} MAE: not compared ({e})")
            diffs[name] = {"error": str(e)}
    return {
        **facts,
        "ensemble": ensemble.compute_with_intervals(n_boot, seed),
        "member_scores": members.compute_with_intervals(n_boot, seed, tail_fit=False),
        "crps_minus_mae": diffs,
    }
