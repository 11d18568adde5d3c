"""The ``nowcast`` section: radar source, model, training and verification of the nowcaster."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from downpour.config.base import Section
from downpour.config.data import VariableSource

__all__ = ["NowcastConfig"]


class NowcastConfig(Section):
    """Radar nowcasting U-Net (docs/models.md)."""

    target: VariableSource | None = Field(None, description="radar file; None = embedded")
    n_frames: int = Field(4, ge=1)
    base_features: int = Field(40, ge=1)
    step_minutes: int = Field(60, ge=1)
    coarsen: int = Field(1, ge=1)
    transform: Literal["log", "dbr", "none"] = "log"
    w_l1: float = Field(0.4, ge=0.0)
    w_spectral: float = Field(0.3, ge=0.0)
    w_mse: float = Field(0.2, ge=0.0)
    w_grad: float = Field(0.1, ge=0.0)
    spectral: Literal["amplitude", "log"] = Field(
        "amplitude", description="spectral term: L1 of FFT amplitudes, or of log amplitudes"
    )
    hours: int = Field(24, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(1, ge=1)
    accumulate: int = Field(16, ge=1)
    depth: int = Field(3, ge=1, le=6, description="U-Net down-sampling levels")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of time for validation")
    test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="last share of time, held out for verification"
    )
    rollout_steps: int = Field(
        1, ge=1, description="training unrolls this many steps, feeding predictions back"
    )
    crop: int | None = Field(
        None, ge=8, description="train on random square crops of this size (None: whole grid)"
    )
    max_batches_per_epoch: int | None = Field(None, ge=1)
    patience: int = Field(10, ge=1, description="early stopping on `monitor`")
    monitor: str = Field(
        "val/MAE", description="metric for early stopping and best.ckpt (min), e.g. val/loss"
    )
    flips: bool = True
    noise: float = Field(0.0, ge=0.0, description="multiplicative rain noise sigma (inputs)")
    format: Literal["zarr", "netcdf"] = "zarr"
    prob_match: bool = Field(
        False, description="forecast: give each step the init frame's value distribution"
    )
    range_factor: float = Field(
        2.0, gt=1.0, description="rollout warning when max/mean exceed this × the training's"
    )
    thresholds: list[float] = Field([0.1, 1.0, 5.0, 10.0], description="CSI/FSS, mm/h")
    fss_scales: list[int] = Field([1, 5, 11, 21], description="FSS window sizes, pixels")
    verify_every: int = Field(3, ge=1, description="steps between verification init times")
    embedded_seed: int = 0
    embedded_hours: int = Field(360, ge=12)
    embedded_size: int = Field(64, ge=16)
    embedded_step_minutes: int = Field(
        15, ge=1, description="native step of the generator (accumulated to step_minutes)"
    )

    @model_validator(mode="after")
    def _fractions(self) -> NowcastConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} "
                "leaves less than 10% of the time for training"
            )
        return self
