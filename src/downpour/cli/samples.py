"""``downpour sample``, ``merge-samples``, ``evaluate``, ``augment``: synthetic fields."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

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
        table = Table(title="ensemble and spectra")
        table.add_column("metric", justify="left")
        table.add_column("value", justify="right")
        for row in _ensemble_rows(q.summary):
            table.add_row(*row)
        console.print(table)


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _ensemble_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the printed ``(metric, value)`` rows of P99.9, ensemble and RAPSD-ratio numbers.

    Parameters
    ----------
    summary
        One entry of ``sample_quality.json`` (:attr:`SampleQuality.summary`).
    """
    rows = [("P99.9 real / generated (mm/day)", f"{_num(summary['real'].get('P99.9'), 2)} / "
             f"{_num(summary['generated'].get('P99.9'), 2)}")]  # fmt: skip
    ens = summary.get("ensemble")
    if ens is None:
        rows.append(("ensemble scores", "– (one member)"))
    else:
        hist = ens["rank_histogram"]
        rows += [
            ("CRPS ECDF / fair (mm/day)", f"{_num(ens['crps_ecdf'])} / {_num(ens['crps_fair'])}"),
            ("MAE of the ensemble mean (mm/day)", _num(ens["mae_ensemble_mean"])),
            ("spread–skill ratio (1 = calibrated)", _num(ens["spread_skill"])),
            ("rank histogram max / min bin ÷ uniform",
             f"{_num(hist['max_ratio'], 2)} / {_num(hist['min_ratio'], 2)}"),
        ]  # fmt: skip
    ratio = summary.get("rapsd_ratio")
    if ratio is not None:
        rows += [(f"RAPSD ratio, wavelengths {band} cells", _num(v, 2))
                 for band, v in ratio["bands"].items()]  # fmt: skip
        rows += [
            (f"RAPSD ratio min / max (≥ {ratio['min_wavelength']:g} cells)",
             f"{_num(ratio['min'], 2)} / {_num(ratio['max'], 2)}"),
            (f"share of wavelengths within ×{ratio['factor']:g}",
             _num(ratio["share_within_factor"], 2)),
        ]  # fmt: skip
    return rows


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
