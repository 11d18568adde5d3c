"""Data-layer benchmark: embedded build, prepare, and loader throughput.

Prints figures; passes or fails on nothing (machines here are shared and noisy).

    .venv/bin/python benchmarks/bench_data.py [--years 8] [--batches 60]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from downpour.bench.loader import loader_rate, make_loader
from downpour.config import EmbeddedConfig, load_config
from downpour.data.transforms import build_transform
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.prepare import prepare
from downpour.downscaling.synthetic import make_embedded


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--years", type=int, default=8)
    ap.add_argument("--batches", type=int, default=60)
    args = ap.parse_args()

    t0 = time.perf_counter()
    make_embedded(EmbeddedConfig(n_years=args.years))
    print(f"embedded build ({args.years} years, 156×132): {time.perf_counter() - t0:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = load_config("demo", [f"data.embedded.n_years={args.years}"])
        t0 = time.perf_counter()
        prepare(cfg, run)
        print(f"prepare (embedded, {args.years} years): {time.perf_counter() - t0:.2f} s")
        aug = build_transform(flips=True, noise=0.02, precip_channels=[0])
        for in_memory in (False, True):
            for workers in (0, 1, 2):
                ds = PrecipDataset(run, "train", transform=aug, in_memory=in_memory, seed=0)
                rate = loader_rate(make_loader(ds, workers, 16), args.batches)
                kind = "in memory" if in_memory else "zarr per item"
                print(f"loader ({kind}, flips+noise, {workers} workers): {rate:7.0f} samples/s")
    print(f"peak resident memory: {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
