"""The ``sampling`` and ``augment`` sections: drawing synthetic fields and using them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from downpour.config.base import Section
from downpour.core.periods import parse_dates

__all__ = ["AugmentConfig", "SamplingConfig"]


class SamplingConfig(Section):
    """Sampling of synthetic fields from trained cVAEs (docs/metrics.md#sample-quality)."""

    mode: Literal["posterior", "prior"] = "posterior"
    members: int = Field(5, ge=1)
    temperature: float = Field(1.0, gt=0.0)
    pixel_threshold: float = Field(0.1, ge=0.0)
    wet_rule: Literal["threshold", "calibrated", "bernoulli"] = Field(
        "threshold",
        description="hurdle head: wet cells where p_wet >= 0.5 (threshold), the round(sum p_wet) "
        "most likely cells (calibrated), or drawn per cell (bernoulli)",
    )
    days: Literal["heavy_only", "all"] | list[dt.date] = "heavy_only"
    split: Literal["train", "val", "test"] = "train"
    seed: int = 0
    batch_size: int = Field(32, ge=1, description="events per block held in memory and written")
    format: Literal["zarr", "netcdf"] = "zarr"
    period: tuple[dt.date, dt.date] | None = Field(
        None,
        description="inclusive range of days to sample, combined with `days` (a shard of a "
        "long archive), e.g. [2001-01-01, 2001-06-30] or '2001-01:2001-06'; None: every day",
    )
    device: str = Field(
        "cpu",
        description="torch device of the networks (cpu, cuda, cuda:1); samples are bitwise "
        "reproducible on one kind of device, not from CPU to GPU",
    )

    @field_validator("period", mode="before")
    @classmethod
    def _period_text(cls, v: Any) -> Any:
        return cls.parse_period(v) if isinstance(v, str) else v

    @field_validator("period")
    @classmethod
    def _period_order(cls, v: tuple[dt.date, dt.date] | None) -> tuple[dt.date, dt.date] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError(f"period starts after it ends ({v[0]} > {v[1]})")
        return v

    @staticmethod
    def parse_period(text: str) -> tuple[dt.date, dt.date]:
        """Parse ``START:END`` (inclusive; :func:`downpour.core.periods.parse_dates`).

        Examples
        --------
        >>> SamplingConfig.parse_period("2001-02:2003")
        (datetime.date(2001, 2, 1), datetime.date(2003, 12, 31))
        """
        return parse_dates(text)


class AugmentConfig(Section):
    """Building the augmented training store (``downpour augment``; docs/index.md#the-main-job)."""

    per_event: int | None = Field(
        None, ge=1, description="synthetic members per heavy event (None: all, or see ratio)"
    )
    ratio: float | None = Field(
        None, gt=0.0, description="synthetic days per real training day (instead of per_event)"
    )
    top_events: int | None = Field(
        None, ge=1, description="use only the N heaviest events (rank of the real event)"
    )
    predictors: Literal["paired", "coarsened"] = Field(
        "paired",
        description="X of a synthetic day: the real event's, or re-derived by coarsening Ŷ",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _one_amount(self) -> AugmentConfig:
        if self.per_event is not None and self.ratio is not None:
            raise ValueError("set either augment.per_event or augment.ratio, not both")
        return self
