"""The layout of a run directory, in one place: :class:`RunDir`.

Every file a run reads or writes is reached through a :class:`RunDir`
property or method; no other module spells a path inside a run. The layout
(``docs/layouts.md``)::

    RUN/
      config.yaml                 resolved configuration
      data/source/*.nc            embedded dataset as NetCDF (embedded runs only)
      data/store.zarr             prepared training store
      data/augmented.zarr         real + synthetic training store
      data/card.json              data card
      data/normalization.json     normalisation fitted on the training split
      checkpoints/<kind>/         epoch=NNN.ckpt, best.ckpt, last.ckpt
      logs/<kind>/version_N/      metrics.csv, TensorBoard events
      samples/<mode>_<split>.zarr samples stores (event, member, y, x)
      forecasts/                  nowcasts written by ``downpour nowcast forecast``
      metrics/<name>.json         train_<kind>, sample_quality, verify, verify_nowcast
      figures/<name>.png          figures
      report.html                 the self-contained report

Examples
--------
>>> run = RunDir("runs/demo")
>>> run.store.as_posix()
'runs/demo/data/store.zarr'
>>> run.checkpoint("cvae", "last").as_posix()
'runs/demo/checkpoints/cvae/last.ckpt'
>>> run.metrics("verify").as_posix()
'runs/demo/metrics/verify.json'
>>> RunDir.of_samples("runs/demo/samples/prior_train.zarr").root.as_posix()
'runs/demo'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RunDir"]


class RunDir:
    """Every path of one run directory.

    Parameters
    ----------
    root
        The run directory (need not exist yet).
    """

    def __init__(self, root: str | os.PathLike[str] | RunDir) -> None:
        self.root = root.root if isinstance(root, RunDir) else Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.root == other.root

    def __hash__(self) -> int:
        return hash(self.root)

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> Path:
        """``RUN/config.yaml``: the resolved configuration."""
        return self.root / "config.yaml"

    # -------------------------------------------------------------------- data
    @property
    def data_dir(self) -> Path:
        """``RUN/data``."""
        return self.root / "data"

    @property
    def source_dir(self) -> Path:
        """``RUN/data/source``: the embedded dataset written as NetCDF files."""
        return self.data_dir / "source"

    @property
    def store(self) -> Path:
        """``RUN/data/store.zarr``: the prepared training store."""
        return self.data_dir / "store.zarr"

    @property
    def augmented_store(self) -> Path:
        """``RUN/data/augmented.zarr``: real and synthetic training days."""
        return self.data_dir / "augmented.zarr"

    @property
    def card(self) -> Path:
        """``RUN/data/card.json``: the data card."""
        return self.data_dir / "card.json"

    @property
    def normalization(self) -> Path:
        """``RUN/data/normalization.json``: normalisation fitted on the training split."""
        return self.data_dir / "normalization.json"

    # ---------------------------------------------------------------- training
    @property
    def checkpoints_dir(self) -> Path:
        """``RUN/checkpoints``."""
        return self.root / "checkpoints"

    def checkpoints(self, kind: str) -> Path:
        """``RUN/checkpoints/<kind>`` (``cvae``, ``srdrn_real``, ``nowcast``, ...)."""
        return self.checkpoints_dir / kind

    def checkpoint(self, kind: str, name: str = "last") -> Path:
        """``RUN/checkpoints/<kind>/<name>.ckpt`` (``best``, ``last``, ``epoch=007``)."""
        return self.checkpoints(kind) / f"{name}.ckpt"

    @property
    def logs_dir(self) -> Path:
        """``RUN/logs``."""
        return self.root / "logs"

    def logs(self, kind: str) -> Path:
        """``RUN/logs/<kind>``: one ``version_N`` folder per fit."""
        return self.logs_dir / kind

    def train_record(self, kind: str) -> Path:
        """``RUN/metrics/train_<kind>.json``: what one training run produced."""
        return self.metrics(f"train_{kind}")

    # ----------------------------------------------------------------- outputs
    @property
    def samples_dir(self) -> Path:
        """``RUN/samples``."""
        return self.root / "samples"

    def samples(self, name: str, suffix: str = ".zarr") -> Path:
        """``RUN/samples/<name><suffix>`` (e.g. ``posterior_train.zarr``)."""
        return self.samples_dir / f"{name}{suffix}"

    @property
    def forecasts_dir(self) -> Path:
        """``RUN/forecasts``: nowcasts."""
        return self.root / "forecasts"

    @property
    def metrics_dir(self) -> Path:
        """``RUN/metrics``."""
        return self.root / "metrics"

    def metrics(self, name: str) -> Path:
        """``RUN/metrics/<name>.json``."""
        return self.metrics_dir / f"{name}.json"

    @property
    def figures_dir(self) -> Path:
        """``RUN/figures``."""
        return self.root / "figures"

    def figure(self, name: str) -> Path:
        """``RUN/figures/<name>.png``."""
        return self.figures_dir / f"{name}.png"

    @property
    def report(self) -> Path:
        """``RUN/report.html``."""
        return self.root / "report.html"

    # -------------------------------------------------------------- navigation
    @classmethod
    def of_checkpoint(cls, path: str | os.PathLike[str]) -> RunDir:
        """Return the run that holds a checkpoint (``RUN/checkpoints/<kind>/x.ckpt`` → ``RUN``).

        A checkpoint outside a ``checkpoints/<kind>/`` folder belongs to the folder it lies in.
        """
        p = Path(path).resolve()
        return cls(p.parents[2] if p.parent.parent.name == "checkpoints" else p.parent)

    @classmethod
    def of_samples(cls, path: str | os.PathLike[str]) -> RunDir:
        """Return the run that holds a samples store (``RUN/samples/x.zarr`` → ``RUN``).

        A store outside a ``samples/`` folder belongs to the folder it lies in.
        """
        path = Path(path)
        return cls(path.parent.parent if path.parent.name == "samples" else path.parent)
