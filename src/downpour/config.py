"""Typed configuration: schema, YAML loading, ``--set`` overrides, presets.

A config has seven sections (``data``, ``model``, ``loss``, ``train``,
``sampling``, ``srdrn``, ``nowcast``) plus a run ``name``. Every section is a
pydantic model that forbids unknown keys, so a typo is an error that names
the key and the file. A YAML file may start from another with
``base: other.yaml`` (path relative to the file); its keys then override the
base's, section by section.

Examples
--------
>>> cfg = load_config(None, overrides=["train.epochs=3", "loss.beta_kl=1e-3"])
>>> cfg.train.epochs, cfg.loss.beta_kl
(3, 0.001)
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from downpour.errors import DownpourError
from downpour.utils import atomic_write_text

__all__ = [
    "AugmentConfig",
    "Config",
    "DataConfig",
    "DimNames",
    "EmbeddedConfig",
    "HeavyConfig",
    "LossConfig",
    "ModelConfig",
    "NowcastConfig",
    "SRDRNConfig",
    "SamplingConfig",
    "SplitRange",
    "SplitsConfig",
    "TrainConfig",
    "VariableSource",
    "apply_overrides",
    "load_config",
    "preset_path",
    "save_config",
]

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data


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
    """Where the data comes from and how it is prepared (DESIGN.md §4)."""

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
    units: Literal["mm/day", "mm/h"] = "mm/day"
    wet_threshold: float = Field(0.1, ge=0.0)
    negative_tolerance: float = Field(
        0.01, ge=0.0, description="negative rain down to -tolerance is rounding; set to 0"
    )
    splits: SplitsConfig = SplitsConfig()
    heavy: HeavyConfig = HeavyConfig()


# ------------------------------------------------------------------------- models


class ModelConfig(Section):
    """cVAE architecture (DESIGN.md §5, §11)."""

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
    """Loss weights and parameters (DESIGN.md §6)."""

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


class TrainConfig(Section):
    """Training loop settings shared by cVAE and SRDRN (DESIGN.md §7)."""

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


class SamplingConfig(Section):
    """Sampling of synthetic fields from trained cVAEs (DESIGN.md §8.1)."""

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
        """Parse ``START:END`` (inclusive); each end ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``.

        A year or month start is its first day, a year or month end its last.

        Examples
        --------
        >>> SamplingConfig.parse_period("2001-02:2003")
        (datetime.date(2001, 2, 1), datetime.date(2003, 12, 31))
        """

        def one(part: str, end: bool) -> dt.date:
            m = re.fullmatch(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?", part.strip())
            if m is None:
                raise ValueError(f"{part!r} is not a date")
            y, mo, d = int(m[1]), int(m[2] or (12 if end else 1)), m[3]
            if d is not None:
                return dt.date(y, mo, int(d))
            if not end:
                return dt.date(y, mo, 1)
            return (dt.date(y, mo, 28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(1)

        start, sep, stop = text.partition(":")
        try:
            if not sep:
                raise ValueError("no ':' between start and end")
            return one(start, False), one(stop, True)
        except ValueError as exc:
            raise ValueError(
                f"period {text!r} must be START:END with YYYY, YYYY-MM or YYYY-MM-DD ends, "
                f"e.g. 2001-01-01:2001-06-30 or 2001:2003 ({exc})"
            ) from None


class SRDRNConfig(Section):
    """SRDRN downscaler and its training overrides (DESIGN.md §5, §11)."""

    filters: int = Field(64, ge=1)
    res_blocks: int = Field(16, ge=0)
    upsample: list[int] | None = Field(None, description="factors; None = from scale_factor")
    loss_scale: float = Field(36.6, gt=0.0)
    w_min: float = Field(0.1, ge=0.0)
    w_max: float = Field(2.0, gt=0.0)
    lr: float = Field(1e-5, gt=0.0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(100, ge=1)
    baseline: Literal["bicubic", "bcsd"] = "bicubic"
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


class NowcastConfig(Section):
    """Radar nowcasting U-Net (DESIGN.md §5-7)."""

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


class AugmentConfig(Section):
    """Building the augmented training store (``downpour augment``, DESIGN.md §1 step 5)."""

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


class Config(Section):
    """The whole resolved configuration of a run."""

    name: str = "downpour"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    sampling: SamplingConfig = SamplingConfig()
    augment: AugmentConfig = AugmentConfig()
    srdrn: SRDRNConfig = SRDRNConfig()
    nowcast: NowcastConfig = NowcastConfig()


# ------------------------------------------------------------------------ loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` and ``5E+2`` as floats (YAML 1.2 style)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def preset_path(name: str) -> Path:
    """Return the path of a preset in ``configs/`` (``"demo"`` → ``configs/demo.yaml``)."""
    return PRESET_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, following ``base:`` and resolving relative paths."""
    if not path.is_file():
        hint = f"; presets: {', '.join(p.stem for p in sorted(PRESET_DIR.glob('*.yaml')))}"
        raise DownpourError(f"config file {path} not found{hint if PRESET_DIR.is_dir() else ''}")
    if path.resolve() in chain:
        raise DownpourError(f"config {path}: 'base' chain loops back to itself")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except yaml.YAMLError as exc:
        raise DownpourError(f"config {path} is not valid YAML: {exc}") from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise DownpourError(
            f"config {path} must be a mapping of sections, got {type(raw).__name__}"
        )
    _resolve_paths(raw, path.parent)
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    merged = _read_yaml(base_path, (*chain, path.resolve()))
    _deep_update(merged, raw)
    return merged


def _resolve_paths(node: Any, root: Path) -> None:
    """Make every relative ``path:`` value absolute against ``root`` (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "path" and isinstance(value, str) and not Path(value).is_absolute():
                node[key] = str((root / value).resolve())
            else:
                _resolve_paths(value, root)
    elif isinstance(node, list):
        for item in node:
            _resolve_paths(item, root)


# Mappings that a derived file replaces whole instead of merging key by key
# (a split given as a date range must not inherit the base's 'years').
_REPLACE_WHOLE = {("data", "splits", s) for s in ("train", "val", "test")}


def _deep_update(base: dict[str, Any], new: dict[str, Any], where: tuple[str, ...] = ()) -> None:
    for key, value in new.items():
        path = (*where, str(key))
        if (
            isinstance(value, dict)
            and isinstance(base.get(key), dict)
            and path not in _REPLACE_WHOLE
        ):
            _deep_update(base[key], value, path)
        else:
            base[key] = value


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise DownpourError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=5")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise DownpourError(f"--set {item!r}: empty part in key {key!r}")
    try:
        value = yaml.load(text, Loader=_Loader)  # noqa: S506
    except yaml.YAMLError:
        value = text
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise DownpourError(f"--set {item!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """Return the pydantic model inside an annotation (``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _valid_keys(loc: Sequence[Any]) -> list[str]:
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part)) if model else None
        model = _model_in(field.annotation) if field else None
        if model is None:
            return []
    return list(model.model_fields)


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            section = ".".join(str(p) for p in loc[:-1]) or "the top level"
            lines.append(
                f"unknown config key '{key}' in {source}{hint} "
                f"(valid keys in {section}: {', '.join(valid)})"
            )
        else:
            got = err.get("input")
            got_txt = f" (got {got!r})" if not isinstance(got, dict) else ""
            lines.append(f"config key '{key}' in {source}: {err['msg']}{got_txt}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Load, merge and validate a configuration.

    Parameters
    ----------
    path
        A YAML file, or the name of a preset in ``configs/`` (``"demo"``);
        ``None`` gives the defaults (the embedded dataset).
    overrides
        ``section.key=value`` strings applied after the file; values are read
        as YAML (``1e-3`` is a number, ``[2, 3]`` a list).

    Returns
    -------
    Config
        The validated configuration.

    Raises
    ------
    DownpourError
        For a missing file, invalid YAML, an unknown key or a wrong type; the
        message names the key and the file.
    """
    raw: dict[str, Any] = {}
    source = "the defaults"
    if path is not None:
        p = Path(path)
        if not p.exists() and not p.suffix and preset_path(str(path)).is_file():
            p = preset_path(str(path))
        raw = _read_yaml(p)
        source = str(p)
    for item in overrides:
        _apply_override(raw, item)
    if overrides:
        source = f"{source} (with --set {' '.join(overrides)})"
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise DownpourError(_format_errors(exc, source)) from None


def apply_overrides(cfg: Config, overrides: Sequence[str], source: str = "the config") -> Config:
    """Return a copy of ``cfg`` with ``section.key=value`` overrides applied and validated.

    Used where the base config is not a file, e.g. the config stored in a checkpoint.
    """
    if not overrides:
        return cfg
    raw = cfg.model_dump(mode="json")
    for item in overrides:
        _apply_override(raw, item)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise DownpourError(
            _format_errors(exc, f"{source} (with --set {' '.join(overrides)})")
        ) from None


def config_to_yaml(cfg: Config) -> str:
    """Return the resolved config as YAML text (every key, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config to ``path`` atomically and return the path."""
    return atomic_write_text(path, config_to_yaml(cfg))
