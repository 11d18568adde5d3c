"""``downpour prepare`` and ``downpour config``: the training store, the resolved configuration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from downpour.cli.common import config_options, console, out_option, print_card
from downpour.config import Config, config_to_yaml
from downpour.core.rundir import RunDir

__all__ = ["prepare", "show_config"]


def _run_prepare(cfg: Config, out: Path) -> dict[str, Any]:
    from downpour.downscaling.prepare import prepare

    t0 = time.perf_counter()
    source = "the embedded dataset" if cfg.data.target is None else str(cfg.data.target.path)
    run = RunDir(out)
    with console.status(escape(f"preparing {source} → {run.store}")):
        card = prepare(cfg, out)
    print_card(card)
    console.print(escape(f"wrote {run.store}, {run.card} in {time.perf_counter() - t0:.1f} s"))
    return card


@click.command()
@config_options()
@out_option()
def prepare(cfg: Config, out: Path | None) -> None:
    """Build the chunked zarr training store and the JSON data card."""
    _run_prepare(cfg, out or Path("runs") / cfg.name)


@click.command("config")
@config_options()
def show_config(cfg: Config) -> None:
    """Print the resolved configuration (every key, defaults included) as YAML."""
    click.echo(config_to_yaml(cfg), nl=False)
