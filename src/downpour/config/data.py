"""The ``data`` section: target and predictor files, embedded dataset, splits, heavy days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from downpour.config.base import Section

__all__ = [
    "DataConfig",
    "DimNames",
    "EmbeddedConfig",
    "HeavyConfig",
    "SplitRange",
    "SplitsConfig",
    "VariableSource",
]


class DimNames(Section):
    """Names of the dimensions and coordinates in a file; ``None`` = detect."""

    time: str | None = None
    y: str | None = None
    x: str | None = None
    lat: str | None = None
    lon: str | None = None


class VariableSource(Section):
    """One variable in one NetCDF file or zarr store."""

    path: Path
    variable: str
    units: str | None = Field(None, description="override the file's units attribute")
    kind: Literal["precip", "other"] = Field(
        "other", description="precip: unit-converted and log1p-transformed like the target"
    )
    name: str | None = Field(None, description="channel name (default: the variable name)")
    dims: DimNames = DimNames()


class EmbeddedConfig(Section):
    """The built-in synthetic dataset used when no target file is given."""

    seed: int = 20240601
    start_year: int = 2001
    n_years: int = Field(8, ge=1)
    height: int = Field(156, ge=8)
    width: int = Field(132, ge=8)
    scale_factor: int = Field(12, ge=1)


class SplitRange(Section):
    """Days of one split: a list of years, or an inclusive date range."""

    years: list[int] | None = None
    start: dt.date | None = None
    end: dt.date | None = None

    @model_validator(mode="after")
    def _one_form(self) -> SplitRange:
        if self.years is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either 'years' or 'start'/'end', not both")
        if self.years is None and (self.start is None or self.end is None):
            raise ValueError("give 'years: [..]' or both 'start' and 'end' (YYYY-MM-DD)")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def describe(self) -> str:
        """Return a short human description, e.g. ``2001-2006``."""
        if self.years is not None:
            ys = sorted(self.years)
            if ys and ys == list(range(ys[0], ys[-1] + 1)) and len(ys) > 1:
                return f"{ys[0]}-{ys[-1]}"
            return ",".join(str(y) for y in ys)
        return f"{self.start}..{self.end}"


class SplitsConfig(Section):
    """Time splits; test days never reach training, samples or statistics."""

    train: SplitRange = SplitRange(years=list(range(2001, 2007)))
    val: SplitRange = SplitRange(years=[2007])
    test: SplitRange = SplitRange(years=[2008])


class HeavyConfig(Section):
    """Heavy-event labels: domain statistic ≥ its training-split quantile."""

    statistic: Literal["mean", "p99", "max"] = "mean"
    quantile: float = Field(0.95, gt=0.0, lt=1.0)


class DataConfig(Section):
    """Where the data comes from and how it is prepared (docs/data.md)."""

    target: VariableSource | None = Field(
        None, description="high-res precipitation; None = the embedded dataset"
    )
    predictors: list[VariableSource] = Field(
        default_factory=list,
        description="low-res predictors; empty = coarsen the target (perfect prognosis)",
    )
    mask: VariableSource | None = Field(None, description="land-sea mask; None = valid cells")
    elevation: VariableSource | None = None
    latlon: bool = Field(True, description="add normalised lat/lon static channels")
    embedded: EmbeddedConfig = EmbeddedConfig()
    scale_factor: int = Field(12, ge=1)
    grid_fit: Literal["error", "crop", "pad"] = Field(
        "error", description="what to do when scale_factor does not divide the grid"
    )
    regrid: Literal["bilinear", "conservative"] = Field(
        "bilinear",
        description="predictors on their own grid: bilinear interpolation, or conservative "
        "(area-weighted) remapping through xarray-regrid (rectilinear grids)",
    )
    predictor_edge: Literal["error", "nearest"] = Field(
        "error",
        description="low-res cells less than one predictor cell outside the predictor grid: "
        "an error, or filled from the nearest predictor cell (counted in the data card)",
    )
    units: Literal["mm/day", "mm/h"] = "mm/day"
    wet_threshold: float = Field(0.1, ge=0.0)
    negative_tolerance: float = Field(
        0.01, ge=0.0, description="negative rain down to -tolerance is rounding; set to 0"
    )
    splits: SplitsConfig = SplitsConfig()
    heavy: HeavyConfig = HeavyConfig()

    @model_validator(mode="after")
    def _embedded_scale(self) -> DataConfig:
        if self.target is None and self.scale_factor != self.embedded.scale_factor:
            raise ValueError(
                f"data.scale_factor={self.scale_factor} differs from data.embedded.scale_factor="
                f"{self.embedded.scale_factor}: the embedded dataset is generated at "
                f"×{self.embedded.scale_factor}; set both to the same value"
            )
        return self
