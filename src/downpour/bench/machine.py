"""Machine ceilings measured in the same run as the benchmarks.

The benchmarks report achieved throughput against what this machine can do
at best, measured now rather than taken from a data sheet (shared machines
are noisy, and a ceiling measured next to the figure is the honest
denominator):

- :func:`matmul_ceiling`: GFLOP/s of a large square ``torch.matmul`` (fp32,
  and bf16 where asked), best of a few repeats, with the threads torch uses;
- :func:`memcpy_bandwidth`: GB/s of a large ``np.copyto`` (bytes read; a copy
  also writes as many), best of a few repeats;
- :class:`PeakMemory`: peak resident memory of the process while a block
  runs (``ru_maxrss`` cannot be reset, so the peak is sampled by a thread),
  and, on a GPU, ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "PeakMemory",
    "best_time",
    "machine_facts",
    "matmul_ceiling",
    "memcpy_bandwidth",
    "rss_mb",
]


def rss_mb() -> float:
    """Return the resident set size of this process in MB (``/proc``; else the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """Peak resident memory (MB) of the process while the ``with`` block runs.

    A daemon thread samples ``/proc/self/statm`` every ``interval`` seconds;
    ``peak_mb`` is the highest reading and ``delta_mb`` its excess over the
    resident size on entry. On CUDA, ``gpu_peak_mb`` is
    ``torch.cuda.max_memory_allocated`` over the block.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self.start_mb = 0.0
        self.gpu_peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.start_mb = self.peak_mb = rss_mb()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())
        if torch.cuda.is_available():
            self.gpu_peak_mb = torch.cuda.max_memory_allocated() / 2**20

    @property
    def delta_mb(self) -> float:
        """Peak minus the resident size on entry (MB)."""
        return self.peak_mb - self.start_mb


def best_time(fn: Callable[[], Any], repeats: int = 3, sync: bool = False) -> float:
    """Smallest wall time (s) of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_ceiling(
    n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 3
) -> float:
    """GFLOP/s of an ``n × n`` by ``n × n`` matmul (``2 n³`` FLOPs), best of ``repeats``.

    Parameters
    ----------
    n
        Matrix size; large enough to be compute bound (2048 on a CPU).
    dtype
        ``torch.float32`` or ``torch.bfloat16``.
    device
        ``"cpu"`` or ``"cuda"``.
    repeats
        Timed repeats after one warm-up.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    seconds = best_time(lambda: torch.matmul(a, b), repeats, sync=device != "cpu")
    return 2.0 * n**3 / seconds / 1e9


def memcpy_bandwidth(mb: int = 512, repeats: int = 5) -> float:
    """GB/s of copying a ``mb`` MB float32 array into another (bytes read per second).

    A copy reads ``mb`` MB and writes as many; the figure counts the bytes
    read, the same way the metric benchmarks count their input.
    """
    n = mb * 2**20 // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    seconds = best_time(lambda: np.copyto(dst, src), repeats)
    return src.nbytes / seconds / 1e9


def machine_facts() -> dict[str, Any]:
    """CPU/GPU model, core count, torch threads and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return facts
