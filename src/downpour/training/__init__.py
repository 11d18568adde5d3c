"""The training machinery every model kind shares, below both domains.

- :mod:`~downpour.training.base`: :class:`~downpour.training.base.BaseModule`, the base
  LightningModule (reseeding, fast paths, NaN guard, streaming validation sums, checkpoint payload);
- :mod:`~downpour.training.fit`: the one ``fit()`` scaffold and the per-rank step count;
- :mod:`~downpour.training.trainer`: the Lightning ``Trainer`` factory (callbacks, loggers,
  atomic checkpoints, strategy, precision);
- :mod:`~downpour.training.optim`, :mod:`~downpour.training.schedules`: optimiser, LR and
  KL schedules;
- :mod:`~downpour.training.fast`: the fast-path hooks (channels_last, compile).
"""

__all__: list[str] = []
