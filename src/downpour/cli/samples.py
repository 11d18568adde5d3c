"""``downpour sample``, ``merge-samples``, ``evaluate``, ``augment``: synthetic fields."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from downpour.cli.common import console, print_quality

__all__ = ["augment_cmd", "evaluate", "merge_samples_cmd", "sample"]


@click.command()
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="cVAE checkpoint (repeat for several models; members are concatenated).",
)
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    default=None,
    help="Prepared store or run directory (default: the checkpoint's run).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Output store (default: RUN/samples/<mode>_<split>.zarr).",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    default=None,
    help="Config whose `sampling` section is used (default: the checkpoint's).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a value, e.g. --set sampling.mode=prior --set sampling.members=10.",
)
@click.option(
    "--period",
    default=None,
    metavar="START:END",
    help="Only the days in this inclusive range (sets sampling.period), e.g. "
    "2001-01-01:2001-06-30 or 2001:2003; one shard of a long archive.",
)
def sample(
    checkpoints: tuple[Path, ...],
    store: Path | None,
    out: Path | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    period: str | None,
) -> None:
    """Draw K synthetic members per selected day from trained cVAE checkpoints.

    Samples from training days (the default) may augment training data;
    samples from validation or test days are marked for evaluation only.
    The store is written block by block (memory: sampling.batch_size events).
    Shards of one archive sampled with --period join with `downpour merge-samples`.
    """
    from downpour.downscaling.samples import open_samples
    from downpour.downscaling.sampling import sample_checkpoints

    out, s = sample_checkpoints(
        checkpoints,
        config=config_path,
        overrides=overrides,
        store=store,
        out=out,
        period=period,
    )
    ds = open_samples(out)
    n_ev, n_mem = ds.sizes["event"], ds.sizes["member"]
    note = " (evaluation only: not for training)" if ds.attrs["for_evaluation_only"] else ""
    ds.close()
    console.print(
        escape(
            f"wrote {out}: {n_ev} events × {n_mem} members, {s.mode} mode, T={s.temperature}, "
            f"{s.split} split{note}"
        )
    )


@click.command("merge-samples")
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Merged store (.zarr directory, or a .nc file).",
)
def merge_samples_cmd(shards: tuple[Path, ...], out: Path) -> None:
    """Join samples stores of one run, sampled by --period, into one store in time order.

    Refuses shards that overlap in days or differ in checkpoints, mode,
    temperature, members, wet rule, store or seed. The merge equals one
    `downpour sample` pass over all the shards' days.
    """
    from downpour.downscaling.samples import merge_samples, open_samples

    merge_samples(list(shards), out, progress=True)
    ds = open_samples(out)
    first, last = (str(ds["time"].values[i])[:10] for i in (0, -1))
    console.print(
        escape(
            f"wrote {out}: {ds.sizes['event']} events ({first} to {last}) × "
            f"{ds.sizes['member']} members from {len(shards)} shards"
        )
    )
    ds.close()


@click.command()
@click.argument("samples", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory for metrics/ and figures/ (default: the samples' run).",
)
@click.option("--figures/--no-figures", default=True, show_default=True, help="Draw the PNGs.")
def evaluate(samples: tuple[Path, ...], out: Path | None, figures: bool) -> None:
    """Score samples stores against the real fields (docs/metrics.md#sample-quality).

    Writes RUN/metrics/sample_quality.json (one entry per store, named after
    the file) and RUN/figures/<name>_*.png, and prints the table.
    """
    from downpour.downscaling.quality import evaluate as run_evaluate

    for path in samples:
        q = run_evaluate(path, out, figures=figures)
        print_quality(path.name.split(".")[0], q.summary)


@click.command("augment")
@click.argument("samples", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    default=None,
    help="Prepared store the samples were drawn from (default: the samples' run).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Augmented store (default: RUN/data/augmented.zarr).",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    default=None,
    help="Config whose `augment` section is used (default: RUN/config.yaml).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="e.g. --set augment.per_event=3, augment.ratio=0.2, augment.predictors=coarsened.",
)
def augment_cmd(
    samples: tuple[Path, ...],
    store: Path | None,
    out: Path | None,
    config_path: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Mix real training days with synthetic members of heavy events into a new store.

    Only samples of training days are accepted. SRDRN trains on the result
    with `downpour train srdrn --store RUN/data/augmented.zarr`.
    """
    from downpour.downscaling.augment import augment_run

    augment_run(
        list(samples),
        store=store,
        out=out,
        config=config_path,
        overrides=overrides,
        echo=lambda m: console.print(escape(m)),
    )
