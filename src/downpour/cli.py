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
from downpour.errors import DownpourError

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
    from downpour.data.prepare import prepare

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
    from downpour.pipeline import run_pipeline

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

    from downpour.data.store import open_store
    from downpour.training.fit_srdrn import train_srdrn

    run = out or Path("runs") / cfg.name
    if kind is None:
        synthetic = False
        if store is not None:
            synthetic = bool(np.asarray(open_store(store)["is_synthetic"].values).any())
        kind = "srdrn_augmented" if synthetic else "srdrn_real"
    result = train_srdrn(cfg, run, store=store, kind=kind, resume=resume, echo=_rank_zero_echo)
    if _is_rank_zero():
        _print_train_result(result)


def _print_verification(result: dict[str, Any]) -> None:
    from downpour.verify import verification_table

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


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="NAME=CKPT",
    help="SRDRN checkpoint to verify (repeatable; default: RUN/checkpoints/srdrn*/best.ckpt).",
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
) -> None:
    """Verify the run's downscalers on the real test days (DESIGN.md §8.2).

    Writes RUN/metrics/verify.json and RUN/figures/verify_*.png, and prints
    the scores with bootstrap intervals and which differences are significant.
    With --save-state, only saves the accumulators of the (--period) days.
    """
    from downpour.verify import verify_run

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
        figures=figures, period=period, save_state=save_state,
        echo=lambda m: console.print(escape(m)),
    )  # fmt: skip
    if save_state is None:
        _print_verification(result)


@cli.command("verify-merge")
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
    from downpour.verify import merge_states

    result = merge_states(state_dirs, out, n_boot=n_boot, echo=lambda m: console.print(escape(m)))
    _print_verification(result)
    console.print(escape(f"wrote {out}"))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output HTML file (default: RUN/report.html).")  # fmt: skip
def report(run: Path, out: Path | None) -> None:
    """Write one self-contained HTML report of a run (figures embedded)."""
    from downpour.pipeline import augmentation_verdict
    from downpour.report import write_report

    summary = ""
    verify_json = run / "metrics" / "verify.json"
    if verify_json.is_file():
        import json

        quality_json = run / "metrics" / "sample_quality.json"
        quality = json.loads(quality_json.read_text()) if quality_json.is_file() else {}
        summary = augmentation_verdict(
            json.loads(verify_json.read_text()), quality.get("posterior_train")
        )
    path = write_report(run, out, summary=summary)
    console.print(escape(f"wrote {path}"))


@cli.command()
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
    from pydantic import ValidationError

    from downpour.config import SamplingConfig, apply_overrides
    from downpour.evaluation import open_samples
    from downpour.sampling import load_cvae, sample_to_store

    if config_path is not None:
        cfg = load_config(config_path, overrides)
    else:
        cfg = apply_overrides(load_cvae(checkpoints[0])[1], overrides, str(checkpoints[0]))
    run = checkpoints[0].resolve().parents[2]
    store = store or run / "data" / "store.zarr"
    s = cfg.sampling
    if period is not None:
        try:
            s = SamplingConfig.model_validate({**s.model_dump(), "period": period})
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise DownpourError(f"--period: {msg}") from None
    suffix = ".zarr" if s.format == "zarr" else ".nc"
    shard = "" if s.period is None else f"_{s.period[0]}_{s.period[1]}"
    out = out or run / "samples" / f"{s.mode}_{s.split}{shard}{suffix}"
    sample_to_store(list(checkpoints), store, s, out)
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


@cli.command("merge-samples")
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
    from downpour.evaluation import open_samples
    from downpour.sampling import merge_samples

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


def _print_quality(name: str, summary: dict[str, Any]) -> None:
    from downpour.evaluation import quality_rows

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
    from downpour.evaluation import evaluate as run_evaluate

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
    from downpour.augment import augment

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
    from downpour.compare import write_comparison

    md_path, csv_path, md = write_comparison(runs, out)
    click.echo(md, nl=False)
    console.print(escape(f"wrote {md_path} and {csv_path}"))


@cli.command("config")
@_config_options()
def show_config(cfg: Config) -> None:
    """Print the resolved configuration (every key, defaults included) as YAML."""
    click.echo(config_to_yaml(cfg), nl=False)


import downpour.cli_bench  # noqa: E402,F401  (registers `downpour bench` on `cli`)
import downpour.cli_nowcast  # noqa: E402,F401  (registers `downpour nowcast ...` on `cli`)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="downpour")


if __name__ == "__main__":
    main()
