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
    arch: Literal["pyramid", "lowres"] = Field(
        "pyramid",
        description="pyramid: the design notes' cVAE (full-resolution encoders of x and y, "
        "posterior and prior); lowres: the ensemble generator (conditioning trunk at the "
        "low-res grid, upsampling stages with spatial noise maps and FiLM(z), prior only)",
    )
    noise_channels: int = Field(
        4, ge=0, description="lowres: channels of N(0, 1) noise maps fed to every stage"
    )
    trunk_blocks: int = Field(4, ge=0, description="lowres: residual blocks at the low-res grid")
    residual: Literal["none", "bicubic"] = Field(
        "none",
        description="lowres: none, or generate the correction (log1p space) over the bicubic "
        "interpolation of the low-res precipitation channel",
    )

    @model_validator(mode="after")
    def _arch_options(self) -> ModelConfig:
        if self.arch == "lowres" and self.skips:
            raise ValueError(
                "model.skips applies to arch=pyramid (skips from its full-resolution "
                "encoder); arch=lowres feeds every stage the static fields and noise maps "
                "instead: set model.skips=false"
            )
        if self.arch == "pyramid" and self.residual != "none":
            raise ValueError(
                "model.residual applies to arch=lowres; set model.arch=lowres or "
                "model.residual=none"
            )
        return self


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
    objective: Literal["elbo", "ensemble"] = Field(
        "elbo",
        description="elbo: the design notes' reconstruction + KL objective (presets v1-v4); "
        "ensemble: M members per input from the prior, scored with the almost-fair CRPS",
    )
    members: int = Field(4, ge=2, description="ensemble: members drawn per input")
    crps_alpha: float = Field(
        0.95, ge=0.0, le=1.0, description="ensemble: fairness α (1 fair, 0 ECDF CRPS)"
    )
    crps_scales: list[int] = Field(
        default_factory=lambda: [4, 12],
        description="ensemble: block sizes (cells) of the pooled CRPS terms",
    )
    lambda_pooled: float = Field(
        1.0, ge=0.0, description="ensemble: weight of each pooled CRPS term"
    )
    lambda_spectral_crps: float = Field(
        0.0, ge=0.0, description="ensemble: weight of the CRPS of log spectral amplitudes"
    )

    @field_validator("crps_scales")
    @classmethod
    def _scales(cls, v: list[int]) -> list[int]:
        if any(s < 2 for s in v):
            raise ValueError("loss.crps_scales are block sizes ≥ 2 (1 is the per-cell term)")
        return v

    @model_validator(mode="after")
    def _ensemble_terms(self) -> LossConfig:
        if self.objective != "ensemble":
            return self
        elbo_only = ("beta_kl", "lambda_sparse", "lambda_focal", "lambda_spectral")
        # a value other than the default is a user's choice the objective would ignore
        # (defaults are not: a saved config spells every key and must load again)
        bad = [
            k
            for k in elbo_only
            if getattr(self, k) > 0 and getattr(self, k) != self.model_fields[k].default
        ]
        if bad:
            raise ValueError(
                f"loss.objective=ensemble does not use {', '.join('loss.' + k for k in bad)} "
                "(ELBO terms); set them to 0 or use loss.objective=elbo. The ensemble "
                "objective keeps lambda_mass, lambda_multiscale and lambda_grad, on the "
                "ensemble mean"
            )
        return self


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
