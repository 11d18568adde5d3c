"""``downpour verify``, ``verify-merge``, ``report``, ``compare``: scores, report, runs compared."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from downpour.cli.common import console, print_verification

__all__ = ["compare", "report", "verify", "verify_merge"]


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="NAME=CKPT",
    help="SRDRN checkpoint to verify (repeatable; default: RUN/checkpoints/srdrn*/last.ckpt and "
    "qsrdrn*/last.ckpt, the final weights of each variant, as in the main job; a quantile SRDRN "
    "is scored by every head, quantile reliability and exceedance probabilities).",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    default=("bicubic", "bcsd"),
    show_default=True,
    help="Baselines fitted on the training days (repeatable).",
)
@click.option("--split", default="test", show_default=True, help="Days to verify.")
@click.option(
    "--fixed",
    multiple=True,
    type=float,
    default=(10.0, 20.0),
    show_default=True,
    help="Fixed event thresholds in the data's units (repeatable).",
)
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--figures/--no-figures", default=True, show_default=True)
@click.option(
    "--period",
    default=None,
    metavar="START:END",
    help="Only the days of the split in this inclusive range, e.g. 2002-01-01:2002-06-30 "
    "or 2002:2011; one piece of a long archive.",
)
@click.option(
    "--save-state",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Save the accumulators (one .npz per model and manifest.json) into DIR instead of "
    "scoring; join pieces with `downpour verify-merge`.",
)
@click.option(
    "--generator/--no-generator",
    default=True,
    show_default=True,
    help="Score the run's cVAE (RUN/checkpoints/cvae/best.ckpt, else last.ckpt) as a "
    "probabilistic downscaler: its prior-mode ensemble on the same days, the `generator` block "
    "of verify.json (CRPS ECDF and fair, CRPS − MAE of every deterministic model with paired "
    "intervals, spread–skill, rank histogram, Brier/BSS/reliability at P95 and P99, CSI/SEDI "
    "of every member pooled). Nothing happens for a run without a cVAE.",
)
@click.option(
    "--members",
    default=16,
    show_default=True,
    type=click.IntRange(min=2),
    help="Prior-mode members per day of the generator's ensemble (not sampling.members); "
    "members are seeded per day, so pieces verified with --period merge exactly.",
)
def verify(
    run: Path,
    checkpoints: tuple[str, ...],
    baselines: tuple[str, ...],
    split: str,
    fixed: tuple[float, ...],
    n_boot: int,
    figures: bool,
    period: str | None,
    save_state: Path | None,
    generator: bool,
    members: int,
) -> None:
    """Verify the run's downscalers on the real test days (docs/metrics.md).

    Writes RUN/metrics/verify.json and RUN/figures/verify_*.png, and prints
    the scores with bootstrap intervals and which differences are significant.
    A run with a cVAE gets its prior-mode ensemble scored too (--members per
    day; --no-generator skips it): verify.json's `generator` block and
    RUN/figures/verify_generator_*.png.
    With --save-state, only saves the accumulators of the (--period) days.
    """
    from downpour.downscaling.verify import verify_run

    ckpts = None
    if checkpoints:
        ckpts = {}
        for item in checkpoints:
            name, sep, path = item.partition("=")
            if not sep:
                name, path = Path(item).parent.name, item
            ckpts[name] = Path(path)
    result = verify_run(
        run, checkpoints=ckpts, baselines=baselines, split=split, fixed=fixed, n_boot=n_boot,
        figures=figures, period=period, save_state=save_state, generator=generator,
        members=members, echo=lambda m: console.print(escape(m)),
    )  # fmt: skip
    if save_state is None:
        print_verification(result)


@click.command("verify-merge")
@click.argument(
    "state_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="STATE_DIR..."
)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Result JSON, e.g. RUN/metrics/verify.json.")  # fmt: skip
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples.")
def verify_merge(state_dirs: tuple[Path, ...], out: Path, n_boot: int) -> None:
    """Merge pieces saved by `verify --period ... --save-state DIR` and score them together.

    Gives the result of one pass over all the pieces' days (bootstrap
    intervals and paired differences included); a day in two pieces is an error.
    """
    from downpour.downscaling.verify import merge_states

    result = merge_states(state_dirs, out, n_boot=n_boot, echo=lambda m: console.print(escape(m)))
    print_verification(result)
    console.print(escape(f"wrote {out}"))


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output HTML file (default: RUN/report.html).")  # fmt: skip
def report(run: Path, out: Path | None) -> None:
    """Write one self-contained HTML report of a run (figures embedded)."""
    from downpour.downscaling.pipeline import report_run

    path = report_run(run, out)
    console.print(escape(f"wrote {path}"))


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("runs/compare"),
    show_default=True,
    help="Folder for compare.md and compare.csv.",
)
def compare(runs: tuple[Path, ...], out: Path) -> None:
    """Print the metrics of several runs side by side (Markdown and CSV tables)."""
    from downpour.report.compare import write_comparison

    md_path, csv_path, md = write_comparison(runs, out)
    click.echo(md, nl=False)
    console.print(escape(f"wrote {md_path} and {csv_path}"))
