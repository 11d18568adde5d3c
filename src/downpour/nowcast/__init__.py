"""The radar nowcasting room: radar sequences, training the U-Net, forecasters, verification.

Modules, in reading order (each imports only those above it, and rooms below
``nowcast`` in the layering):

- :mod:`~downpour.nowcast.radar`: reading a radar file, accumulation to the
  model step, coarsening;
- :mod:`~downpour.nowcast.synthetic`: the embedded generator of advecting rain cells;
- :mod:`~downpour.nowcast.windows`: gaps and windows of consecutive frames,
  the datasets that serve them;
- :mod:`~downpour.nowcast.datamodule`: the source of a config, its time split,
  training statistics, the shuffled data module;
- :mod:`~downpour.nowcast.loss`: the nowcaster's loss;
- :mod:`~downpour.nowcast.module`: the network of a config, the rollout, the
  Lightning module;
- :mod:`~downpour.nowcast.train`: ``train_nowcast`` and ``load_nowcaster``;
- :mod:`~downpour.nowcast.inits`: which frames can start a forecast;
- :mod:`~downpour.nowcast.forecasters`: the registry of methods (``model``,
  ``persistence``, ``extrapolation``), one signature;
- :mod:`~downpour.nowcast.range_check`: exploding and vanishing rollouts;
- :mod:`~downpour.nowcast.forecast`: forecasts as datasets, from a checkpoint, written;
- :mod:`~downpour.nowcast.verify`: scores per lead time against the baselines.

Rain rates as the network sees them (log1p, dBR), the no-rain value and the
temporal encoding live in the shared data layer (:mod:`downpour.data.rain`);
the network in :mod:`downpour.models.nowcast`. Figures of a verification are
drawn by :mod:`downpour.report.nowcast_figures`.
"""
