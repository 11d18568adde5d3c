"""``downpour nowcast train | forecast | verify``: the radar nowcaster's commands.

Thin layer over :mod:`downpour.nowcast.train`, :mod:`downpour.nowcast.forecast` and
:mod:`downpour.nowcast.verify`.
The group is added to ``downpour`` by :mod:`downpour.cli.main`.
Input problems print one ``error:`` line and exit with status 2; a rollout
that leaves the training range prints a ``warning:`` line naming the lead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from downpour.cli.common import (
    DownpourGroup,
    config_options,
    console,
    out_option,
    print_train_result,
)
from downpour.cli.nowcast_tables import events_table, paired_table, scores_table
from downpour.config import Config, VariableSource
from downpour.core.errors import DownpourError
from downpour.core.rundir import RunDir

__all__ = ["nowcast"]


@click.group(cls=DownpourGroup, context_settings={"help_option_names": ["-h", "--help"]})
def nowcast() -> None:
    """Radar nowcasting: train the nowcaster, forecast, verify.

    `train` fits the network of nowcast.model (advection: extrapolation along
    the optical-flow motion plus a learned correction; residual: last frame
    plus a change) on one radar file, several (events), or the embedded
    generator; `forecast` rolls a checkpoint forward from an init time;
    `verify` scores it per lead time, per event and pooled, against
    persistence and pysteps' optical-flow extrapolation.
    """


def _echo(msg: str) -> None:
    console.print(escape(msg), soft_wrap=True)


def _source(path: Path | None, variable: str | None, checkpoint: Path) -> VariableSource | None:
    if path is None:
        return None
    if variable is None:
        from downpour.nowcast.train import load_nowcaster

        events = load_nowcaster(checkpoint)[1].nowcast.events()
        if not events:
            raise DownpourError(
                f"--source {path}: the checkpoint was trained on the embedded generator, so "
                "the variable is unknown; give --variable"
            )
        variable = events[0].variable
    return VariableSource(path=path, variable=variable)


def _warn_lines(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        console.print(f"[bold yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True)


@nowcast.command("train")
@config_options(default="nowcast")
@out_option()
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    default=None,
    help="Continue from this checkpoint (e.g. RUN/checkpoints/nowcast/last.ckpt).",
)
def train_cmd(cfg: Config, out: Path | None, resume: Path | None) -> None:
    """Train the nowcast U-Net (default config: the nowcast preset)."""
    from downpour.nowcast.train import train_nowcast

    run = out or Path("runs") / cfg.name
    result = train_nowcast(cfg, run, resume=resume, echo=_echo)
    print_train_result(result)
    m = result.metrics
    if "val/MAE" in m and "val/MAE_persistence" in m:
        _echo(
            f"validation MAE {m['val/MAE']:.3f} mm/h (persistence {m['val/MAE_persistence']:.3f})"
        )


_checkpoint = click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="Nowcast checkpoint (RUN/checkpoints/nowcast/best.ckpt or last.ckpt).",
)
_source_opts = [
    click.option(
        "--source",
        type=click.Path(path_type=Path),
        default=None,
        help="Radar file (default: the checkpoint's nowcast.target or embedded generator).",
    ),
    click.option("--variable", default=None, help="Variable of --source (default: the run's)."),
]


def _with(options: list[Any]) -> Any:
    def decorate(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f

    return decorate


@nowcast.command("forecast")
@_checkpoint
@click.option("--init", "init", required=True, help="Time of the last observed frame (ISO).")
@click.option(
    "--hours",
    type=float,
    default=None,
    help="Forecast length in hours [default: the run's nowcast.hours].",
)
@click.option("--to-end", is_flag=True, help="Forecast to the end of the source's time axis.")
@_with(_source_opts)
@click.option(
    "--event",
    default=None,
    help="Which of the run's events to forecast (when nowcast.target lists several).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Output store (default: RUN/forecasts/nowcast_<init>.zarr, .nc for NetCDF).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["zarr", "netcdf"]),
    default=None,
    help="Store format [default: from --out's suffix, else the run's nowcast.format].",
)
def forecast_cmd(
    checkpoint: Path,
    init: str,
    hours: float | None,
    to_end: bool,
    source: Path | None,
    variable: str | None,
    event: str | None,
    out: Path | None,
    fmt: str | None,
) -> None:
    """Roll the model forward from --init, feeding its predictions back; write the store."""
    from downpour.nowcast.forecast import forecast, write_forecast
    from downpour.nowcast.train import load_nowcaster

    if to_end and hours is not None:
        raise DownpourError("give either --hours or --to-end, not both")
    cfg = load_nowcaster(checkpoint)[1]
    src = _source(source, variable, checkpoint)
    length = None if to_end else (hours if hours is not None else float(cfg.nowcast.hours))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = forecast(checkpoint, init=init, hours=length, source=src, event=event)
    from downpour.nowcast.range_check import RolloutRangeWarning

    _warn_lines([w for w in caught if issubclass(w.category, RolloutRangeWarning)])
    fmt = fmt or ("netcdf" if out is not None and out.suffix == ".nc" else cfg.nowcast.format)
    if out is None:
        stamp = str(ds.attrs["init_time"]).replace(":", "")
        suffix = ".nc" if fmt == "netcdf" else ".zarr"
        out = RunDir.of_checkpoint(checkpoint).forecasts_dir / f"nowcast_{stamp}{suffix}"
    write_forecast(ds, out, fmt)
    n = ds.sizes["lead_time"]
    last = ds["time"].values[-1]
    _echo(
        f"wrote {out}: {n} leads of {ds.attrs['step_minutes']} min from {ds.attrs['init_time']} "
        f"to {str(last)[:16]}, grid {ds.sizes['y']}×{ds.sizes['x']}, mm/h; max "
        f"{float(ds['domain_max'].max()):.1f} mm/h, wet fraction "
        f"{float(ds['wet_fraction'].values[0]):.3f} → {float(ds['wet_fraction'].values[-1]):.3f}"
    )


@nowcast.command("verify")
@_checkpoint
@_with(_source_opts)
@click.option(
    "--period",
    type=click.Choice(["test", "val", "all"]),
    default="test",
    show_default=True,
    help="Init times whose truth lies in this period (all = includes training: in-sample).",
)
@click.option("--hours", type=float, default=None, help="Longest lead [default: nowcast.hours].")
@click.option("--every", type=int, default=None, help="Steps between init times.")
@click.option("--no-extrapolation", is_flag=True, help="Skip the pysteps extrapolation baseline.")
@click.option(
    "--n-boot",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of the init times for the intervals (0: none).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory for metrics/ and figures/ (default: the checkpoint's run).",
)
def verify_cmd(
    checkpoint: Path,
    source: Path | None,
    variable: str | None,
    period: str,
    hours: float | None,
    every: int | None,
    no_extrapolation: bool,
    n_boot: int,
    out: Path | None,
) -> None:
    """Score model, persistence and extrapolation per lead, per event and pooled.

    Pooled over the verified events (the held-out ones with nowcast.holdout:
    event), with bootstrap intervals over init times and the model's paired
    differences from each baseline; per event, the scores every 30 minutes and
    the forecast's power at 8–16 km over the observed at the longest lead.
    """
    from downpour.nowcast.verify import verify_nowcast

    run = out or RunDir.of_checkpoint(checkpoint).root
    result = verify_nowcast(
        checkpoint,
        source=_source(source, variable, checkpoint),
        period=period,
        hours=hours,
        every=every,
        extrapolation=not no_extrapolation,
        n_boot=n_boot,
        out_dir=run,
        echo=_echo,
    )
    console.print(scores_table(result))
    if len(result["events"]) > 1 or result["intervals"]:
        console.print(events_table(result))
    if result["paired"]:
        console.print(paired_table(result))
    for note in result["notes"]:
        _echo(f"note: {note}")
    n_warn = len(result["range_warnings"])
    if n_warn:
        console.print(f"[bold yellow]warning:[/] {n_warn} rollout(s) left the training range:")
        for msg in result["range_warnings"][:5]:
            _echo(f"  {msg}")
    paths = RunDir(run)
    _echo(
        f"wrote {paths.metrics('verify_nowcast')}, {paths.figure('nowcast_scores')}, "
        f"{paths.figure('nowcast_maps')}"
    )
