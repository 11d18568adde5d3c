"""Trained models wrapped for ``downpour downscale``: physical predictors in, fields out.

A :class:`Downscaler` takes a block of predictors ``(b, C, h, w)`` in
physical units and their days, and returns ``(b, H, W)`` (one field),
``(b, Q, H, W)`` (quantile heads) or ``(b, K, H, W)`` (the cVAE's
prior-mode members) in the target units: an SRDRN (normalisation from its
checkpoint), the cVAE (members seeded per day, so a day's members do not
depend on the period or the blocks), or a baseline fitted on a run's real
training days (bicubic, BCSD).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downpour.config import Config
from downpour.core.errors import DownpourError
from downpour.downscaling.events import event_generator
from downpour.downscaling.model_facts import Facts
from downpour.downscaling.predict import fit_baseline
from downpour.models.loading import LoadedModel

__all__ = [
    "Downscaler",
    "baseline_downscaler",
    "cvae_downscaler",
    "srdrn_downscaler",
]

_DECODE_CHUNK = 32  # member fields decoded in one call (as downpour sample)


@dataclass
class Downscaler:
    """A model ready to downscale blocks of physical predictors."""

    name: str  # srdrn, cvae, bicubic, bcsd
    label: str  # the run's name for it (variant) or the baseline name
    extra: tuple[str, np.ndarray] | None  # ("quantile", τ) or ("member", indices)
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x (b,C,h,w), days) → (b,[E,]H,W)
    channels: list[int]  # channels read (baselines: the precipitation channel only)
    attrs: dict[str, Any] = field(default_factory=dict)


def srdrn_downscaler(
    loaded: LoadedModel, facts: Facts, batch_size: int, device: torch.device
) -> Downscaler:
    """Wrap an SRDRN: ``(b, H, W)``, or ``(b, Q, H, W)`` with quantile heads."""
    net = loaded.net.to(device)
    taus = [float(t) for t in getattr(loaded.config.srdrn, "quantiles", []) or []]
    norm = facts.normalization

    def predict(x: np.ndarray, days: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = np.ascontiguousarray(norm.normalize_x(x[start : start + batch_size]),
                                          dtype=np.float32)  # fmt: skip
                out.append(net(torch.from_numpy(xb).to(device)).float().cpu().numpy())
        pred = np.concatenate(out)
        if not taus:
            if pred.shape[1] != 1:
                raise DownpourError(
                    f"{loaded.path}: the network returns {pred.shape[1]} fields per day but its "
                    "config lists no srdrn.quantiles; retrain or fix the checkpoint's config"
                )
            return pred[:, 0]
        if pred.shape[1] != len(taus):
            raise DownpourError(
                f"{loaded.path}: the network returns {pred.shape[1]} fields per day for the "
                f"{len(taus)} quantile levels {taus} of its config"
            )
        return pred

    extra = ("quantile", np.asarray(taus, dtype=np.float64)) if taus else None
    return Downscaler("srdrn", loaded.variant, extra, predict, list(range(len(facts.channels))))


def cvae_downscaler(
    loaded: LoadedModel, facts: Facts, cfg: Config, device: torch.device
) -> Downscaler:
    """Wrap the cVAE: ``(b, K, H, W)`` prior-mode members (``cfg.sampling``), seeded per day."""
    net, s = loaded.net.to(device), cfg.sampling
    static = torch.from_numpy(facts.static())[None].to(device)
    mask_t = torch.from_numpy(facts.mask).to(device)
    norm = facts.normalization
    k = s.members

    def predict(x: np.ndarray, days: np.ndarray) -> np.ndarray:
        xn = norm.normalize_x(torch.from_numpy(x)).to(torch.float32)  # as the training dataset
        out = np.empty((x.shape[0], k, *facts.shape), dtype=np.float32)
        for j, day in enumerate(days):
            with torch.no_grad():
                z = net.sample(xn[j : j + 1].to(device), static, k, mode="prior",
                               temperature=s.temperature,
                               generator=event_generator(s.seed, day, 0, device),
                               wet_rule=s.wet_rule, mask=mask_t, chunk=_DECODE_CHUNK)  # fmt: skip
            out[j] = torch.expm1(z[0].float()).clamp_min(0).cpu().numpy()
        if s.pixel_threshold > 0:
            out[out < s.pixel_threshold] = 0.0
        return out

    attrs = {
        "members": k,
        "seed": s.seed,
        "temperature": s.temperature,
        "wet_rule": s.wet_rule,
        "pixel_threshold": s.pixel_threshold,
        "seeding": "per (seed, day): a day's members do not depend on the period or blocks",
    }
    extra = ("member", np.arange(k, dtype=np.int32))
    channels = list(range(len(facts.channels)))
    return Downscaler("cvae", loaded.variant, extra, predict, channels, attrs)


def baseline_downscaler(name: str, store: Path, facts: Facts) -> Downscaler:
    """Wrap a baseline fitted on the real training days of ``store``: ``(b, H, W)``."""
    precip = [i for i, p in enumerate(facts.predictors) if p["kind"] == "precip"]
    if not precip:
        raise DownpourError(
            f"the run's store has no precipitation predictor (channels {facts.channels}); "
            "bicubic and BCSD interpolate low-res precipitation"
        )
    model = fit_baseline(name, store)

    def predict(x: np.ndarray, days: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x[:, 0]), dtype=np.float32)

    attrs = {"fitted_on": f"real training days of {store}"}
    return Downscaler(name, name, None, predict, precip[:1], attrs)
