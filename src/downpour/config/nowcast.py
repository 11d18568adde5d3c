"""The ``nowcast`` section: radar source, model, training and verification of the nowcaster."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from downpour.config.base import Section
from downpour.config.data import VariableSource

__all__ = ["NowcastConfig", "RadarEvent"]


class RadarEvent(VariableSource):
    """One radar file of the nowcaster's data: an event (a day, a radar)."""

    coarsen: int | None = Field(
        None, ge=1, description="block-mean factor of this file (default: nowcast.coarsen)"
    )
    event: str | None = Field(None, description="event name (default: the file's stem)")
    pixel_km: float | None = Field(
        None,
        gt=0.0,
        description="grid spacing in km after coarsening (default: from the x coordinate's "
        "units, m or km), for the spectra in km",
    )

    @property
    def label(self) -> str:
        """The event's name: ``event``, else the file's stem."""
        return self.event or self.path.stem


class NowcastConfig(Section):
    """Radar nowcasting U-Net (docs/models.md)."""

    target: RadarEvent | list[RadarEvent] | None = Field(
        None, description="radar file, or a list of them (events); None = embedded"
    )
    model: Literal["residual", "advection"] = Field(
        "residual",
        description="residual: last frame + correction; advection: the latest frame advected "
        "along its optical-flow motion (pysteps Lucas-Kanade) + a correction carried along",
    )
    holdout: Literal["block", "event"] = Field(
        "block",
        description="block: each event cut by time (val_fraction, test_fraction); event: "
        "whole events held out (val_events, test_events)",
    )
    val_events: list[str] = Field([], description="events validated on (holdout: event)")
    test_events: list[str] = Field([], description="events held out for verify (holdout: event)")
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
    w_fss: float = Field(
        0.0, ge=0.0, description="weight of 1 − FSS of soft exceedances (does not reward fading)"
    )
    fss_loss_thresholds: list[float] = Field(
        [1.0, 5.0], description="thresholds of the FSS loss term, mm/h"
    )
    fss_loss_scales: list[int] = Field([1, 5, 11], description="FSS loss neighbourhoods, pixels")
    fss_loss_sharpness: float = Field(
        0.1, gt=0.0, description="sigmoid width of the soft exceedance, in transformed units"
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
    prob_match_smooth: int = Field(
        3,
        ge=1,
        description="probability matching ranks the running mean over this many pixels (odd; "
        "1: exact ranks)",
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

    @model_validator(mode="after")
    def _odd_smooth(self) -> NowcastConfig:
        if self.prob_match_smooth % 2 == 0:
            raise ValueError(f"nowcast.prob_match_smooth must be odd, got {self.prob_match_smooth}")
        return self

    @model_validator(mode="after")
    def _advection(self) -> NowcastConfig:
        if self.model == "advection" and self.n_frames < 2:
            raise ValueError(
                "nowcast.model=advection estimates the motion from the input frames: set "
                "nowcast.n_frames to 2 or more"
            )
        return self

    @model_validator(mode="after")
    def _events(self) -> NowcastConfig:
        events = self.events()
        names = [e.label for e in events]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(
                f"nowcast.target: event names {dup} appear twice; give each file its own "
                "`event:` name"
            )
        if self.holdout == "event":
            if not self.val_events or not self.test_events:
                raise ValueError(
                    "nowcast.holdout=event needs nowcast.val_events and nowcast.test_events "
                    f"(names of nowcast.target events: {', '.join(names) or 'none'})"
                )
            for key in ("val_events", "test_events"):
                unknown = [n for n in getattr(self, key) if n not in names]
                if unknown:
                    raise ValueError(
                        f"nowcast.{key}: unknown event(s) {unknown}; valid names: "
                        f"{', '.join(names) or 'none (nowcast.target is not a list of files)'}"
                    )
            both = sorted(set(self.val_events) & set(self.test_events))
            if both:
                raise ValueError(f"nowcast: events {both} are in both val_events and test_events")
            if len(set(self.val_events) | set(self.test_events)) >= len(names):
                raise ValueError(
                    "nowcast.holdout=event leaves no event for training; list fewer "
                    "val_events/test_events"
                )
        elif self.val_events or self.test_events:
            raise ValueError(
                "nowcast.val_events/test_events are used with nowcast.holdout=event only; "
                "set nowcast.holdout: event, or remove them"
            )
        return self

    def events(self) -> list[RadarEvent]:
        """Return the radar files of ``target`` as a list (empty for the embedded generator)."""
        if self.target is None:
            return []
        return list(self.target) if isinstance(self.target, list) else [self.target]
