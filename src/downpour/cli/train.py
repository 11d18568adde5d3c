"""``downpour train cvae|srdrn``: training commands, with the device and DDP options."""

from __future__ import annotations

from pathlib import Path

import click

from downpour.cli.common import (
    config_options,
    device_options,
    is_rank_zero,
    out_option,
    print_train_result,
    rank_zero_echo,
)
from downpour.config import Config


@click.group()
def train() -> None:
    """Train a model of the run."""


@train.command("cvae")
@config_options(default="demo")
@device_options
@out_option()
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    default=None,
    help="Continue from this checkpoint (e.g. RUN/checkpoints/cvae/last.ckpt).",
)
def train_cvae_cmd(cfg: Config, out: Path | None, resume: Path | None) -> None:
    """Train the conditional VAE on the run's training store (prepared if needed)."""
    from downpour.downscaling.train import train_cvae

    run = out or Path("runs") / cfg.name
    result = train_cvae(cfg, run, resume=resume, echo=rank_zero_echo)
    if is_rank_zero():
        print_train_result(result)


@train.command("srdrn")
@config_options(default="demo")
@device_options
@out_option()
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    default=None,
    help="Store to train on (default: RUN/data/store.zarr; e.g. RUN/data/augmented.zarr).",
)
@click.option(
    "--kind",
    default=None,
    help="Variant name for checkpoints/logs (default: srdrn_real, or srdrn_augmented "
    "when the store holds synthetic days).",
)
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue from this checkpoint.")  # fmt: skip
def train_srdrn_cmd(
    cfg: Config, out: Path | None, store: Path | None, kind: str | None, resume: Path | None
) -> None:
    """Train the SRDRN downscaler on the real or an augmented training store."""
    from downpour.downscaling.train import srdrn_variant, train_srdrn

    run = out or Path("runs") / cfg.name
    kind = kind or srdrn_variant(store)
    result = train_srdrn(cfg, run, store=store, kind=kind, resume=resume, echo=rank_zero_echo)
    if is_rank_zero():
        print_train_result(result)
