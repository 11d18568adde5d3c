"""``downpour demo``: the main job on the embedded dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import click
from rich.markup import escape

from downpour.cli.common import (
    config_options,
    console,
    out_option,
    print_card,
    print_quality,
    print_verification,
)
from downpour.config import Config

__all__ = ["demo"]


@click.command()
@config_options(default="demo")
@out_option(Path("runs/demo"))
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples.")
def demo(cfg: Config, out: Path, n_boot: int) -> None:
    """Run the main job on the embedded dataset (default config: the demo preset).

    prepare → train the generator → sample (prior, and posterior for the
    design notes' cVAE) → evaluate → augment →
    train SRDRN and the quantile SRDRN (srdrn.pipeline_quantiles) on real-only
    and on augmented data (same seed and steps) → verify them and the
    baselines (bicubic, BCSD) on the test years, the quantile SRDRN also by its
    heads, quantile reliability and exceedance probabilities, and the
    generator's ensemble by CRPS, spread-skill and rank histogram → report. Prints
    the comparison tables and the report's path.
    """
    from downpour.data.splits import DrySplitWarning
    from downpour.downscaling.pipeline import run_pipeline

    with warnings.catch_warnings():  # dry splits are printed with the data card
        warnings.simplefilter("ignore", DrySplitWarning)
        res = run_pipeline(
            cfg,
            out,
            echo=lambda m: console.print(escape(m)),
            n_boot=n_boot,
            show_card=print_card,
        )
    for name, summary in res.quality.items():
        print_quality(name, summary)
    print_verification(res.verification)
    console.print(escape(res.verdict))
    total = sum(res.seconds.values())
    console.print(escape(f"total {total / 60:.1f} min; report: {res.report}"))
