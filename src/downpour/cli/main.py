"""The ``downpour`` command line.

One sub-command per step, each a thin layer over a library function.

Every command takes ``--config FILE`` (a YAML file or a preset name from
``configs/``) and any number of ``--set section.key=value`` overrides. Input
problems print one ``error:`` line naming the file, variable or key, and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from downpour import __version__
from downpour.config import Config, config_to_yaml, load_config
from downpour.core.errors import DownpourError

__all__ = ["main"]

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def _config_options(
    default: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--config`` and ``--set`` to a command and pass the loaded Config as ``cfg``.

    Parameters
    ----------
    default
        Preset used when ``--config`` is not given (``None``: built-in defaults).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.option(
            "--config",
            "-c",
            "config_path",
            default=default,
            help="YAML config file or preset name (configs/*.yaml)"
            + (f" [default: {default}]." if default else "; default: built-in defaults."),
        )
        @click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="SECTION.KEY=VALUE",
            help="Override one config value, e.g. --set train.epochs=5 (repeatable).",
        )
        @functools.wraps(func)
        def wrapper(config_path: str | None, overrides: tuple[str, ...], **kwargs: Any) -> Any:
            return func(cfg=load_config(config_path, overrides), **kwargs)

        return wrapper

    return decorate


def _out_option(default: Path | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return the ``--out RUN`` option (default: ``runs/<name>`` when ``default`` is None)."""
    return click.option(
        "--out",
        "-o",
        type=click.Path(path_type=Path),
        default=default,
        show_default=default is not None,
        help="Run directory" + ("." if default is not None else " (default: runs/<name>)."),
    )


class _Group(click.Group):
    """Group that turns DownpourError into one clean error line (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DownpourError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="downpour")
def cli() -> None:
    """downpour: deep-learning precipitation toolkit.

    Each step of the main job is its own command: `prepare` builds the
    training store, `train cvae` trains the conditional VAE, `sample` draws
    synthetic fields from it, `demo` runs the job on the embedded dataset.
    Every command takes --config (a YAML file or a preset in configs/) and
    --set section.key=value overrides.
    """


def card_table(card: dict[str, Any]) -> Table:
    """Return the data card as a rich table (one row per split)."""
    units = card["units"]
    g = card["grid"]
    th = card["thresholds"]
    title = (
        f"{card['name']}: {g['high_res'][0]}×{g['high_res'][1]} ← "
        f"{g['low_res'][0]}×{g['low_res'][1]} "
        f"(×{g['scale_factor']}), {len(card['channels'])} predictor(s) {card['channels']}, "
        f"static {card['static_channels']}\n"
        f"wet-value thresholds (train): P90 {th['P90']:.1f}  P95 {th['P95']:.1f}  "
        f"P99 {th['P99']:.1f} {units}; valid cells {g['valid_cells']} ({g['valid_fraction']:.0%})"
    )
    table = Table(title=escape(title), title_justify="left", caption=f"values in {units}")
    for col in ("split", "dates", "days", "wet", "mean", "max", "heavy"):
        table.add_column(
            col, justify="left" if col in ("split", "dates") else "right", no_wrap=True
        )
    for name, s in card["splits"].items():
        table.add_row(
            name,
            f"{s['start']}..{s['end']}",
            str(s["days"]),
            f"{s['wet_fraction']:.3f}",
            f"{s['mean']:.2f}",
            f"{s['max']:.1f}",
            str(s["heavy_days"]),
        )
    return table


def _run_prepare(cfg: Config, out: Path) -> dict[str, Any]:
    from downpour.downscaling.prepare import prepare

    t0 = time.perf_counter()
    source = "the embedded dataset" if cfg.data.target is None else str(cfg.data.target.path)
    with console.status(escape(f"preparing {source} → {out}/data/store.zarr")):
        card = prepare(cfg, out)
    _print_card(card)
    console.print(
        escape(
            f"wrote {out}/data/store.zarr, {out}/data/card.json in {time.perf_counter() - t0:.1f} s"
        )
    )
    return card


def _print_card(card: dict[str, Any]) -> None:
    console.print(card_table(card))
    h = card["heavy"]
    console.print(
        f"heavy day: domain {h['statistic']} ≥ {h['threshold']:.2f} {card['units']} "
        f"(train P{h['quantile'] * 100:g}); unused days {card['unused_days']}; "
        f"negative values clipped {card['clipped_negative_values']}"
    )


@cli.command()
@_config_options()
@_out_option()
def prepare(cfg: Config, out: Path | None) -> None:
    """Build the chunked zarr training store and the JSON data card."""
    _run_prepare(cfg, out or Path("runs") / cfg.name)


@cli.command()
@_config_options(default="demo")
@_out_option(Path("runs/demo"))
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples.")
def demo(cfg: Config, out: Path, n_boot: int) -> None:
    """Run the main job on the embedded dataset (default config: the demo preset).

    prepare → train cVAE → sample (posterior and prior) → evaluate → augment →
    train SRDRN on real-only and on augmented data (same seed and steps) →
    verify both and the baselines on the test years → report. Prints the
    comparison table and the report's path.
    """
    from downpour.downscaling.pipeline import run_pipeline

    res = run_pipeline(
        cfg,
        out,
        echo=lambda m: console.print(escape(m)),
        n_boot=n_boot,
        show_card=_print_card,
    )
    for name, summary in res.quality.items():
        _print_quality(name, summary)
    _print_verification(res.verification)
    console.print(escape(res.verdict))
    total = sum(res.seconds.values())
    console.print(escape(f"total {total / 60:.1f} min; report: {res.report}"))


def _print_verification(result: dict[str, Any]) -> None:
    from downpour.downscaling.verify import verification_table

    names, rows = verification_table(result)
    n = result["models"][names[0]]["n_days"]
    table = Table(title=f"verification on {n} real {result['split']} days "
                  "(estimate [95% bootstrap interval])")  # fmt: skip
    table.add_column("score")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in result.get("significance", []):
        console.print(escape(line))


def _print_quality(name: str, summary: dict[str, Any]) -> None:
    from downpour.downscaling.quality import quality_rows

    table = Table(title=f"sample quality: {name} ({summary['events']} events × "
                  f"{summary['members']} members, {summary['mode']} mode)")  # fmt: skip
    for col in ("metric", "real", "generated"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in quality_rows(summary):
        table.add_row(*row)
    console.print(table)


@cli.command()
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
    """Score samples stores against the real fields (DESIGN.md §8.1).

    Writes RUN/metrics/sample_quality.json (one entry per store, named after
    the file) and RUN/figures/<name>_*.png, and prints the table.
    """
    from downpour.downscaling.quality import evaluate as run_evaluate

    for path in samples:
        q = run_evaluate(path, out, figures=figures)
        _print_quality(path.name.split(".")[0], q.summary)


def _run_config(run: Path, config_path: str | None, overrides: tuple[str, ...]) -> Config:
    """``--config`` if given, else the run's own config.yaml, else the defaults."""
    if config_path is None and (run / "config.yaml").is_file():
        config_path = str(run / "config.yaml")
    return load_config(config_path, overrides)


@cli.command("augment")
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
    from downpour.downscaling.augment import augment

    first = samples[0].resolve()
    run = first.parent.parent if first.parent.name == "samples" else first.parent
    keys = {o.split("=", 1)[0].strip() for o in overrides}
    # one amount replaces the other (the run's config may set per_event)
    for key, other in (
        ("augment.ratio", "augment.per_event"),
        ("augment.per_event", "augment.ratio"),
    ):
        if key in keys and other not in keys:
            overrides = (f"{other}=null", *overrides)
    cfg = _run_config(run, config_path, overrides)
    out = out or run / "data" / "augmented.zarr"
    augment(store or run / "data" / "store.zarr", list(samples), out, cfg.augment,
            echo=lambda m: console.print(escape(m)))  # fmt: skip


@cli.command()
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


@cli.command("config")
@_config_options()
def show_config(cfg: Config) -> None:
    """Print the resolved configuration (every key, defaults included) as YAML."""
    click.echo(config_to_yaml(cfg), nl=False)


# the other commands register themselves on `cli` when imported
import downpour.cli.train  # noqa: E402,F401,I001  (train cvae|srdrn)
import downpour.cli.sample  # noqa: E402,F401  (sample, merge-samples)
import downpour.cli.verify  # noqa: E402,F401  (verify, verify-merge, report)
import downpour.cli.bench  # noqa: E402,F401  (bench)
import downpour.cli.nowcast  # noqa: E402,F401  (nowcast train|forecast|verify)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="downpour")


if __name__ == "__main__":
    main()
