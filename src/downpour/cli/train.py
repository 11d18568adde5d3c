"""``downpour train cvae|srdrn``: training commands, with the device and DDP options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from downpour.cli.main import _config_options, _out_option, cli, console
from downpour.config import Config


@cli.group()
def train() -> None:
    """Train a model of the run."""


def _device_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--devices``, ``--num-nodes``, ``--accelerator``, ``--strategy`` (override ``train``).

    Goes below :func:`_config_options` (it receives the loaded ``cfg``).
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


@train.command("cvae")
@_config_options(default="demo")
@_device_options
@_out_option()
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    default=None,
    help="Continue from this checkpoint (e.g. RUN/checkpoints/cvae/last.ckpt).",
)
def train_cvae_cmd(cfg: Config, out: Path | None, resume: Path | None) -> None:
    """Train the conditional VAE on the run's training store (prepared if needed)."""
    from downpour.training.fit import train_cvae

    run = out or Path("runs") / cfg.name
    result = train_cvae(cfg, run, resume=resume, echo=_rank_zero_echo)
    if _is_rank_zero():
        _print_train_result(result)


def _is_rank_zero() -> bool:
    """Return True in the process of global rank 0 (the only one on a single device).

    Under DDP every rank runs the command; only rank 0 prints.
    """
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _rank_zero_echo(message: str) -> None:
    """Print a progress line on global rank 0 only."""
    if _is_rank_zero():
        console.print(escape(message))


def _print_train_result(result: Any) -> None:
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


@train.command("srdrn")
@_config_options(default="demo")
@_device_options
@_out_option()
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
    import numpy as np

    from downpour.downscaling.store import open_store
    from downpour.downscaling.train_srdrn import train_srdrn

    run = out or Path("runs") / cfg.name
    if kind is None:
        synthetic = False
        if store is not None:
            synthetic = bool(np.asarray(open_store(store)["is_synthetic"].values).any())
        kind = "srdrn_augmented" if synthetic else "srdrn_real"
    result = train_srdrn(cfg, run, store=store, kind=kind, resume=resume, echo=_rank_zero_echo)
    if _is_rank_zero():
        _print_train_result(result)
