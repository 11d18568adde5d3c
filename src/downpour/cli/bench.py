"""``downpour bench``: throughput and memory figures to JSON and RESULTS.md.

Definitions: docs/performance.md#benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from downpour.cli.common import console

__all__ = ["bench"]


@click.command("bench")
@click.option(
    "--only",
    "parts",
    multiple=True,
    type=click.Choice(
        ["machine", "training", "generator", "sampling", "loader", "verification", "downscale"]
    ),
    help="Run only these parts (repeatable; default: all).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("benchmarks"),
    show_default=True,
    help="Folder for results_<device>.json and RESULTS.md.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny sizes: checks the machinery in seconds (figures meaningless).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch threads for the run (default: torch's own).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Timed steps of the training and generator parts (default: each part's own).",
)
def bench(
    parts: tuple[str, ...],
    out: Path,
    device: str,
    quick: bool,
    threads: int | None,
    steps: int | None,
) -> None:
    """Measure training, sampling, loader and verification throughput and peak memory.

    Prints figures and never passes or fails on time. The full run takes under
    20 minutes on a 2-core CPU: training steps of cVAE v3 (and v1) and the
    published SRDRN at 156×132 with each fast path (channels_last, bf16 where
    the hardware has native bf16, torch.compile), the ensemble generator against
    that cVAE at equal width (members/s, issue 12), K = 100 sampling, the zarr
    loader with 0/1/2 workers, and verification against pysteps and `scores`,
    each beside the matmul ceiling or memory-copy bandwidth measured in the
    same run. Writes OUT/results_<device>.json and regenerates OUT/RESULTS.md
    from every results file there (a GPU run adds its own).
    """
    from downpour.bench import PARTS, run_bench, write_results_md

    result = run_bench(
        parts or PARTS, quick=quick, device=device, out_dir=out, threads=threads, steps=steps,
        echo=lambda m: console.print(escape(m)),
    )  # fmt: skip
    md = write_results_md(out)
    console.print(escape(f"wrote {result['path']} and {md}"))
