"""What every command shares: options, error handling, printing of tables and progress.

Commands import this module and the library, never each other; the group
that holds them is :mod:`downpour.cli.main`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from downpour.config import Config, load_config
from downpour.core.errors import DownpourError

__all__ = [
    "DownpourGroup",
    "card_table",
    "config_options",
    "console",
    "device_options",
    "echo",
    "err_console",
    "is_rank_zero",
    "out_option",
    "print_card",
    "print_quality",
    "print_train_result",
    "print_verification",
    "rank_zero_echo",
]


#: Where results and progress go (stdout).
console = Console(stderr=False, highlight=False)
#: Where ``error:`` lines go (stderr).
err_console = Console(stderr=True, highlight=False)


def echo(message: str) -> None:
    """Print one progress line (markup escaped, long lines wrapped softly)."""
    console.print(escape(message), soft_wrap=True)


def config_options(
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
            help="YAML config file, or the name of a preset shipped with downpour"
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


def out_option(default: Path | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return the ``--out RUN`` option (default: ``runs/<name>`` when ``default`` is None)."""
    return click.option(
        "--out",
        "-o",
        type=click.Path(path_type=Path),
        default=default,
        show_default=default is not None,
        help="Run directory" + ("." if default is not None else " (default: runs/<name>)."),
    )


class DownpourGroup(click.Group):
    """Group that turns DownpourError into one clean error line (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a :class:`DownpourError` becomes one ``error:`` line and exit 2."""
        try:
            return super().invoke(ctx)
        except DownpourError as exc:
            # one line whatever the message holds (a library's text may span several)
            text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
            err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)


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


def print_card(card: dict[str, Any]) -> None:
    """Print the data card of ``downpour prepare`` as a table and its heavy-day line."""
    console.print(card_table(card))
    h = card["heavy"]
    console.print(
        f"heavy day: domain {h['statistic']} ≥ {h['threshold']:.2f} {card['units']} "
        f"(train P{h['quantile'] * 100:g}); unused days {card['unused_days']}; "
        f"negative values clipped {card['clipped_negative_values']}"
    )
    missing = {k: v.get("missing_cell_days", 0) for k, v in card["splits"].items()}
    if any(missing.values()):
        console.print(
            "gaps (NaN cell-days inside the mask, left out of scores): "
            + ", ".join(f"{k} {v}" for k, v in missing.items())
        )
    for line in card.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(line)}", soft_wrap=True)


def print_verification(result: dict[str, Any]) -> None:
    """Print a verification result as a table with intervals, then its significance lines."""
    from downpour.report.tables import verification_table

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
    _print_generator(result)
    if "probabilistic" not in result:
        return
    from downpour.report import probabilistic as prob

    for title, header, rows in (
        ("quantile heads: reliability and pinball score", prob.QUANTILE_HEADER,
         prob.quantile_rows(result)),
        ("exceedance probabilities (BSS against the training climatology)", prob.EVENT_HEADER,
         prob.event_rows(result)),
    ):  # fmt: skip
        print_table(title, header, rows)
    for line in prob.difference_lines(result):
        console.print(escape(line))


def print_table(title: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print one rich table: a title, a header and string rows."""
    table = Table(title=title)
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _print_generator(result: dict[str, Any]) -> None:
    """Print the generator's block as two tables (nothing without one)."""
    from downpour.report.tables import (
        GENERATOR_DIFFERENCE_HEADER,
        generator_difference_rows,
        generator_rows,
    )

    if "generator" not in result:
        return
    k = result["generator"]["members"]
    for title, header, rows in (
        (f"generator: prior-mode ensemble of {k} members (estimate [95% bootstrap interval])",
         ["score", "generator"], generator_rows(result)),
        ("generator CRPS against each model's MAE (paired intervals)",
         GENERATOR_DIFFERENCE_HEADER, generator_difference_rows(result)),
    ):  # fmt: skip
        print_table(title, header, rows)


def print_quality(name: str, summary: dict[str, Any]) -> None:
    """Print the sample-quality summary of one samples store as a table."""
    from downpour.report.tables import quality_ensemble_rows, quality_rows

    table = Table(title=f"sample quality: {name} ({summary['events']} events × "
                  f"{summary['members']} members, {summary['mode']} mode)")  # fmt: skip
    for col in ("metric", "real", "generated"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in quality_rows(summary):
        table.add_row(*row)
    console.print(table)
    print_table(f"{name}: tail, ensemble and spectra (mm/day where a unit applies)",
                ["metric", "value"], quality_ensemble_rows(summary))  # fmt: skip


def device_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--devices``, ``--num-nodes``, ``--accelerator``, ``--strategy`` (override ``train``).

    Goes below :func:`config_options` (it receives the loaded ``cfg``).
    """

    @click.option(
        "--devices",
        default=None,
        metavar="N",
        help="Devices per node, e.g. 4 or auto (overrides train.devices); the effective "
        "batch is batch_size × devices × nodes × accumulate.",
    )
    @click.option(
        "--num-nodes",
        "num_nodes",
        type=click.IntRange(min=1),
        default=None,
        help="Nodes (overrides train.num_nodes); under SLURM run one task per device.",
    )
    @click.option(
        "--accelerator",
        default=None,
        help="cpu, gpu, cuda, mps or auto (overrides train.accelerator).",
    )
    @click.option(
        "--strategy",
        default=None,
        help="Lightning strategy, e.g. ddp or ddp_spawn (overrides train.strategy; "
        "auto: DDP tolerating parameters without gradient when devices × nodes > 1).",
    )
    @functools.wraps(func)
    def wrapper(
        cfg: Config,
        devices: str | None,
        num_nodes: int | None,
        accelerator: str | None,
        strategy: str | None,
        **kwargs: Any,
    ) -> Any:
        from downpour.config import apply_overrides

        given = {
            "devices": devices,
            "num_nodes": num_nodes,
            "accelerator": accelerator,
            "strategy": strategy,
        }
        sets = [f"train.{k}={v}" for k, v in given.items() if v is not None]
        return func(cfg=apply_overrides(cfg, sets, "the command line"), **kwargs)

    return wrapper


def is_rank_zero() -> bool:
    """Return True in the process of global rank 0 (the only one on a single device).

    Under DDP every rank runs the command; only rank 0 prints.
    """
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def rank_zero_echo(message: str) -> None:
    """Print a progress line on global rank 0 only."""
    if is_rank_zero():
        console.print(escape(message))


def print_train_result(result: Any) -> None:
    """Print what a training run produced: epochs, validation scores, checkpoints."""
    m = result.metrics
    shown = ", ".join(
        f"{k.split('/', 1)[1]} {m[k]:.3f}"
        for k in ("val/MAE", "val/MAE_tail", "val/MAE_prior", "val/kl")
        if k in m
    )
    console.print(
        escape(
            f"trained {result.epochs} epochs ({result.seconds_per_epoch:.1f} s/epoch); {shown}\n"
            f"best {result.best_checkpoint}\nlast {result.last_checkpoint}"
        )
    )
