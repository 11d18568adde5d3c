"""The ``downpour`` command line: one group over the command modules.

One sub-command per step, each a thin layer over a library function; the
commands live in one module per group (:mod:`~downpour.cli.data`,
:mod:`~downpour.cli.train`, :mod:`~downpour.cli.samples`,
:mod:`~downpour.cli.verify`, :mod:`~downpour.cli.demo`,
:mod:`~downpour.cli.bench`, :mod:`~downpour.cli.nowcast`) and are added
here by name; they share only :mod:`downpour.cli.common`.

Every command takes ``--config FILE`` (a YAML file, or the name of a preset
shipped with downpour) and any number of ``--set section.key=value``
overrides. Input problems print one ``error:`` line naming the file,
variable or key, and exit with status 2, without a traceback.
"""

from __future__ import annotations

import click

from downpour import __version__
from downpour.cli import bench, data, demo, downscale, nowcast, samples, train, verify
from downpour.cli.common import DownpourGroup

__all__ = ["cli", "main"]


@click.group(cls=DownpourGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="downpour")
def cli() -> None:
    """downpour: deep-learning precipitation toolkit.

    Each step of the main job is its own command: `prepare` builds the
    training store, `train cvae` trains the conditional VAE, `sample` draws
    synthetic fields from it, `demo` runs the job on the embedded dataset.
    Every command takes --config (a YAML file or the name of a preset shipped
    with downpour) and --set section.key=value overrides.
    """


for command in (
    data.prepare,
    train.train,
    samples.sample,
    samples.merge_samples_cmd,
    samples.evaluate,
    samples.augment_cmd,
    verify.verify,
    verify.verify_merge,
    verify.report,
    verify.compare,
    downscale.downscale_cmd,
    demo.demo,
    data.show_config,
    data.convert_checkpoint_cmd,
    bench.bench,
    nowcast.nowcast,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="downpour")


if __name__ == "__main__":
    main()
