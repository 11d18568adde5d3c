"""``downpour sample`` and ``merge-samples``: synthetic members from trained cVAEs."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from downpour.cli.main import cli, console
from downpour.config import load_config
from downpour.core.errors import DownpourError


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
    from downpour.downscaling.quality import open_samples
    from downpour.downscaling.sampling import load_cvae, sample_to_store

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
    from downpour.downscaling.quality import open_samples
    from downpour.downscaling.sampling import merge_samples

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
