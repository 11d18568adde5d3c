"""Machine figures: ceilings are work over time; peak memory sees allocations.

Figures are never asserted against wall-clock limits; what is checked is
that each figure is computed from its definition (rates = work / measured time).
"""

from __future__ import annotations

import numpy as np
import pytest

from downpour.bench import machine


def test_ceilings_are_work_over_time(monkeypatch):
    monkeypatch.setattr(machine, "best_time", lambda fn, repeats=3, sync=False: 0.5)
    assert machine.matmul_ceiling(256) == pytest.approx(2 * 256**3 / 0.5 / 1e9)
    assert machine.memcpy_bandwidth(8) == pytest.approx(8 * 2**20 / 0.5 / 1e9)


def test_peak_memory_sees_a_temporary_allocation():
    with machine.PeakMemory(interval=0.001) as mem:
        a = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        a += 1
        del a
    assert mem.delta_mb > 250
