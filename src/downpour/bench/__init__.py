"""``downpour bench``: throughput and memory figures, never pass/fail.

Definitions: docs/performance.md#benchmarks.

Parts (each a module of this package):

- ``machine``: matmul ceiling (GFLOP/s, fp32 and bf16) and memory-copy
  bandwidth, measured in the same run as the figures they bound;
- ``training``: training-step samples/s and achieved GFLOP/s of the cVAE
  (v3, and v1 at the design notes' base width 64) and the published SRDRN
  at 156×132, batch 16, for each fast path;
- ``generator``: the ensemble generator (``model.arch: lowres``) against the
  design notes' cVAE at equal width, training and sampling members/s side by
  side, GFLOP per member and the verdict against issue 12's target;
- ``sampling``: fields/s with K = 100 members per event;
- ``loader``: zarr loader samples/s with 0, 1, 2 workers, chunking and
  persistent workers;
- ``verification``: GB/s of the verification metrics on (3650, 156, 132)
  against the memory-copy bandwidth, beside pysteps and ``scores``;
- ``downscale``: ``downpour downscale`` days/s end to end (reading,
  regridding, forward, writing NetCDF) against the network's bare forward
  days/s, and peak memory for 1 and 10 years of daily predictors.

:func:`run_bench` writes ``OUT/results_<device>.json``;
:func:`write_results_md` regenerates ``OUT/RESULTS.md`` from every results
file present (a CPU run and a GPU run sit side by side).
"""

from __future__ import annotations

from downpour.bench.report import write_results_md
from downpour.bench.runner import PARTS, run_bench

__all__ = ["PARTS", "run_bench", "write_results_md"]
