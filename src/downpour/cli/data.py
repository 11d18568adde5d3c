"""``downpour prepare``, ``config``, ``convert-checkpoint``: store, resolved config, safe files."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from downpour.cli.common import config_options, console, out_option, print_card
from downpour.config import Config, config_to_yaml
from downpour.core.rundir import RunDir
from downpour.data.splits import DrySplitWarning

__all__ = ["convert_checkpoint_cmd", "prepare", "show_config"]


def _run_prepare(cfg: Config, out: Path) -> dict[str, Any]:
    from downpour.downscaling.prepare import prepare

    t0 = time.perf_counter()
    source = "the embedded dataset" if cfg.data.target is None else str(cfg.data.target.path)
    run = RunDir(out)
    with console.status(escape(f"preparing {source} → {run.store}")):
        with warnings.catch_warnings():  # printed with the card below
            warnings.simplefilter("ignore", DrySplitWarning)
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


@click.command("convert-checkpoint")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--i-trust-this-file",
    "trust",
    is_flag=True,
    help="Required: converting unpickles SRC, which runs any code it holds.",
)
def convert_checkpoint_cmd(src: Path, dst: Path, trust: bool) -> None:
    """Rewrite a checkpoint you trust as tensors and plain data (safe to load anywhere).

    downpour reads checkpoints with torch.load(weights_only=True), which
    refuses anything but tensors and plain containers, so a file that carries
    code never runs. A checkpoint written by other code (numpy values, paths,
    custom objects) is refused; if you made it or trust it, this command
    loads it once, unsafely, and writes DST in the safe form.
    """
    from downpour.core.checkpoint import convert_checkpoint

    path = convert_checkpoint(src, dst, trust=trust)
    console.print(escape(f"wrote {path} (tensors and plain data only)"))
