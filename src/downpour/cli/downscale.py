"""``downpour downscale``: a trained downscaler applied to predictor files of any period."""

from __future__ import annotations

import warnings
from pathlib import Path

import click
from rich.markup import escape

from downpour.cli.common import console, err_console

__all__ = ["downscale_cmd"]


@click.command("downscale")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="SRDRN or cVAE checkpoint (it carries grids, mask, normalisation, predictor variables).",
)
@click.option(
    "--baseline",
    default=None,
    metavar="NAME",
    help="bicubic or bcsd instead of a checkpoint (fitted on the training days of --run).",
)
@click.option(
    "--run",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory: where --baseline is fitted; the facts of a checkpoint of an earlier "
    "version.",
)
@click.option(
    "--predictors",
    multiple=True,
    type=click.Path(path_type=Path),
    help="NetCDF/zarr file holding the model's predictor variables, any period, any grid "
    "covering the domain (repeatable; default: --config's data.predictors, else the training "
    "files).",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    default=None,
    help="Config whose data.predictors (matched to the model's channels by name), data.regrid, "
    "data.predictor_edge and sampling are used (default: the checkpoint's).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a value, e.g. --set data.regrid=conservative --set sampling.members=10.",
)
@click.option(
    "--period",
    default=None,
    metavar="START:END",
    help="Only the days in this inclusive range, e.g. 2031:2040 (run an archive in pieces).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file (default: downscaled_<model>_<first>_<last>.nc here).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["netcdf", "zarr"]),
    default=None,
    help="Output format (default: zarr for a .zarr --out, else CF NetCDF).",
)
@click.option(
    "--output",
    type=click.Choice(["values", "quantiles", "probability"]),
    default=None,
    help="values (default: the field, quantiles or members), quantiles, or probability of "
    "exceeding --threshold.",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Rain rate (model units, e.g. mm/day) for --output probability.",
)
@click.option(
    "--block-days",
    type=click.IntRange(min=1),
    default=None,
    help="Days held in memory and written at once (default: up to 365).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Days per forward pass.")  # fmt: skip
@click.option("--device", default=None, help="Torch device (default: cuda when available).")
def downscale_cmd(
    checkpoint: Path | None,
    baseline: str | None,
    run: Path | None,
    predictors: tuple[Path, ...],
    config_path: str | None,
    overrides: tuple[str, ...],
    period: str | None,
    out: Path | None,
    fmt: str | None,
    output: str | None,
    threshold: float | None,
    block_days: int | None,
    batch_size: int,
    device: str | None,
) -> None:
    """Downscale predictor files of any period with a trained model into a CF file.

    The predictors go through the reading, unit conversion and regridding of
    `downpour prepare`, then the checkpoint's normalisation; the output
    (time, [quantile | member,] lat, lon) is written block by block. A
    warning gives the share of predictor values outside the training range.
    """
    from downpour.downscaling.downscale import OutOfRangeWarning, downscale

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfRangeWarning)
        result = downscale(
            checkpoint,
            predictors=predictors,
            config=config_path,
            overrides=overrides,
            baseline=baseline,
            run=run,
            period=period,
            out=out,
            fmt=fmt,
            output=output,
            threshold=threshold,
            block_days=block_days,
            batch_size=batch_size,
            device=device,
        )
    for w in caught:
        if issubclass(w.category, OutOfRangeWarning):
            err_console.print(f"[bold yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    shape = " × ".join(f"{n} {d}" for d, n in result.sizes.items())
    edges = {k: v for k, v in result.edge_cells.items() if v}
    note = f"; edge cells filled from the nearest predictor cell: {edges}" if edges else ""
    console.print(
        escape(
            f"wrote {result.path}: {result.variable} ({shape}), {result.first} to {result.last}, "
            f"{result.model} ({result.label}){note}"
        ),
        soft_wrap=True,
    )
