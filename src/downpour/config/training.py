"""The ``train`` section: the training loop shared by every model kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from downpour.config.base import Section

__all__ = ["TrainConfig"]


class TrainConfig(Section):
    """Training loop settings shared by cVAE and SRDRN (docs/models.md#training)."""

    epochs: int = Field(150, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(40, ge=1)
    min_delta: float = Field(0.0, ge=0.0)
    monitor: str = "val/MAE_tail"
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0)
    plateau_patience: int = Field(15, ge=0)
    min_lr: float = Field(1e-6, ge=0.0)
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: float = Field(1.0, ge=0.0)
    accumulate: int = Field(1, ge=1)
    precision: Literal["32", "bf16-mixed"] = "32"
    seed: int = 42
    min_heavy_fraction: float = Field(0.2, ge=0.0, le=1.0)
    flips: bool = False
    noise: float = Field(0.0, ge=0.0)
    checkpoint_every: int = Field(10, ge=1)
    val_every: int = Field(
        1,
        ge=1,
        description="validate every N epochs (early-stopping patience then counts validations); "
        "lowered to the largest divisor of the epochs so the last epoch is always validated",
    )
    max_batches_per_epoch: int | None = Field(
        None, ge=1, description="cap on training batches per epoch (None: every day once)"
    )
    num_workers: int = Field(0, ge=0)
    in_memory: bool | None = Field(
        None,
        description="hold the training and validation days in memory (fast for small stores); "
        "None: when they take under 2 GiB per training process",
    )
    persistent_workers: bool = Field(
        True, description="keep DataLoader workers alive between epochs (with num_workers > 0)"
    )
    pin_memory: bool | None = Field(
        None, description="page-locked host batches for fast GPU copies (None: when CUDA is used)"
    )
    channels_last: bool = Field(
        False, description="NHWC memory format for the network and its 4-D inputs"
    )
    compile: bool = Field(
        False, description="torch.compile the network (first steps pay for compilation)"
    )
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field(
        "auto",
        description="Lightning strategy; auto = ddp_find_unused_parameters_true when "
        "devices × num_nodes > 1 (e.g. ddp, ddp_spawn)",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v
