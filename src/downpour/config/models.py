"""The ``model``, ``loss`` and ``srdrn`` sections: networks and their losses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from downpour.config.base import Section

__all__ = ["LossConfig", "ModelConfig", "SRDRNConfig"]


class ModelConfig(Section):
    """cVAE architecture (docs/models.md, docs/presets.md#presets)."""

    d_z: int = Field(64, ge=1)
    base_filters: int = Field(64, ge=1)
    d_x: int = Field(64, ge=1)
    d_y: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    res_blocks: bool = False
    attention: bool = False
    skips: bool = False
    injection: Literal["every", "first", "first_two", "none"] = "every"
    head: Literal["relu", "softplus", "hurdle"] = "relu"
    prior: Literal["standard", "conditional"] = "standard"


class LossConfig(Section):
    """Loss weights and parameters (docs/models.md#losses)."""

    scale: float = Field(20.0, gt=0.0)
    w_min: float = Field(0.1, ge=0.0)
    w_max: float = Field(3.0, gt=0.0)
    tail_boost: float = Field(2.0, ge=1.0)
    tail_quantile: float = Field(0.99, gt=0.0, lt=1.0)
    lambda_mass: float = Field(0.005, ge=0.0)
    beta_kl: float = Field(0.01, ge=0.0)
    kl_schedule: Literal["constant", "linear", "cyclical"] = "linear"
    kl_warmup_epochs: int = Field(20, ge=0)
    kl_cycle_period: int = Field(30, ge=1)
    kl_cycle_drop: int = Field(10, ge=0)
    free_bits: float = Field(0.0, ge=0.0)
    lambda_sparse: float = Field(0.0, ge=0.0)
    target_wet: float = Field(0.75, ge=0.0, le=1.0)
    sparse_temperature: float = Field(
        0.02, gt=0.0, description="mm/day; sigmoid((ŷ - wet)/T) counts wet pixels softly"
    )
    lambda_multiscale: float = Field(0.0, ge=0.0)
    multiscale_weights: list[float] = [1.0, 0.3, 0.1]
    lambda_grad: float = Field(0.0, ge=0.0)
    grad_variant: Literal["signed", "magnitude"] = "signed"
    lambda_focal: float = Field(0.0, ge=0.0)
    focal_gamma: float = Field(2.0, ge=0.0)
    focal_boost: float = Field(10.0, ge=1.0)
    dry_weight: float = Field(1.0, ge=0.0)
    lambda_hurdle: float = Field(1.0, ge=0.0)
    lambda_spectral: float = Field(0.0, ge=0.0)


class SRDRNConfig(Section):
    """SRDRN downscaler and its training overrides (docs/models.md, docs/presets.md#presets)."""

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "baseline" in data:
            raise ValueError(
                "srdrn.baseline was never used and is retired: remove it, and choose the "
                "baselines to verify with `downpour verify RUN --baseline bicubic --baseline bcsd`"
            )
        return data

    filters: int = Field(64, ge=1)
    res_blocks: int = Field(16, ge=0)
    upsample: list[int] | None = Field(None, description="factors; None = from scale_factor")
    loss_scale: float = Field(36.6, gt=0.0)
    w_min: float = Field(0.1, ge=0.0)
    w_max: float = Field(2.0, gt=0.0)
    lr: float = Field(1e-5, gt=0.0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(100, ge=1)
    kernel_size: int = Field(3, ge=1, description="odd kernel of every convolution")
    upsample_filters: int = Field(256, ge=1, description="channels of the upsampling stages")
    output: Literal["linear", "log1p"] = Field(
        "linear",
        description="last conv predicts mm/day (its ReLU is returned, as published) "
        "or log1p(mm/day) (expm1 of its ReLU is returned)",
    )
    scheduler: Literal["cosine", "plateau", "none"] = Field(
        "none", description="LR schedule (published: constant Adam); warm-up from train"
    )
    min_heavy_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="heavy days per batch (published: plain shuffle)"
    )
    batches_per_epoch: int | None = Field(
        None,
        ge=1,
        description="exact training batches per epoch, drawn from the shuffled stream "
        "whatever the number of days (a fixed step budget); None: one pass over the days",
    )
    patience: int | None = Field(
        None, ge=1, description="early-stopping patience in epochs; None: train every epoch"
    )
    channels_last: bool | None = Field(
        None, description="NHWC memory format for SRDRN; None: train.channels_last"
    )
    val_every: int | None = Field(
        None, ge=1, description="validate SRDRN every N epochs; None: train.val_every"
    )
    quantiles: list[float] = Field(
        default_factory=list,
        description="quantile levels τ of the output heads, strictly increasing in (0, 1), "
        "trained with the pinball loss; []: one deterministic head",
    )
    synthetic_heads: Literal["all", "median"] = Field(
        "median",
        description="heads whose loss sees synthetic training days: every head, or only the "
        "median head (τ closest to 0.5)",
    )
    pipeline_quantiles: list[float] = Field(
        default_factory=lambda: [0.5, 0.95, 0.99, 0.999],
        description="the main job (downpour demo / run) also trains quantile SRDRNs "
        "(qsrdrn_real, qsrdrn_augmented) with these levels beside the deterministic ones; "
        "[]: skip them",
    )
    residual: Literal["none", "bicubic"] = Field(
        "none",
        description="none: the network predicts rain; bicubic: it predicts the correction "
        "added to the bicubic interpolation of the low-res precipitation channel (mm/day)",
    )

    @field_validator("quantiles", "pipeline_quantiles")
    @classmethod
    def _quantile_levels(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < t < 1.0 for t in v):
            raise ValueError("quantile levels must lie strictly between 0 and 1")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("quantile levels must be strictly increasing")
        return v

    @model_validator(mode="after")
    def _residual_needs_linear_output(self) -> SRDRNConfig:
        if self.residual != "none" and self.output != "linear":
            raise ValueError(
                f"srdrn.residual={self.residual} adds a correction in mm/day and needs "
                f"srdrn.output=linear, got {self.output!r}"
            )
        return self

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size padding), got {v}")
        return v

    @field_validator("upsample")
    @classmethod
    def _factors(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(f not in (2, 3) for f in v):
            raise ValueError(f"upsampling factors must be 2 or 3, got {v}")
        return v
