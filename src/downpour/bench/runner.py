"""Run the benchmark parts and write ``results_<device>.json``.

The full run is sized to finish in under 10 minutes on a 2-core CPU, plus
about 9 for the generator part (base 96 training steps take tens of seconds); the
quick run (``--quick``) shrinks every part to seconds (tiny grids and
networks) to check that the machinery works, and its figures mean nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from downpour.bench.machine import machine_facts, matmul_ceiling, memcpy_bandwidth
from downpour.bench.training import VARIANTS, Variant, bench_training
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text

__all__ = ["PARTS", "bf16_native", "run_bench"]

#: Benchmark parts in run order.
PARTS: tuple[str, ...] = (
    "machine", "training", "generator", "sampling", "loader", "verification", "downscale",
)  # fmt: skip

_TINY_SRDRN = [
    "srdrn.filters=8", "srdrn.res_blocks=2", "srdrn.upsample=[2,3]", "srdrn.upsample_filters=8",
]  # fmt: skip


def bf16_native(device: str) -> bool:
    """Whether bf16 runs on native kernels here (CUDA with bf16, or a CPU with AVX512-BF16/AMX).

    Without them, bf16 convolutions and matmuls fall back to slow reference
    kernels (measured 12× slower training and 50× slower matmul than fp32 on
    an AVX2-only CPU), so the benchmark skips the bf16 training variants.
    """
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def _variants(device: str, compile_too: bool) -> tuple[Variant, ...]:
    keep = []
    for v in VARIANTS:
        if v.precision == "bf16-mixed" and not bf16_native(device):
            continue
        if v.compile and not compile_too:
            continue
        keep.append(v)
    if compile_too and not any(v.compile for v in keep):
        keep.append(Variant("fp32 channels_last compile", channels_last=True, compile=True))
    return tuple(keep)


def _training(quick: bool, device: str, steps: int | None = None) -> list[dict[str, Any]]:
    if quick:
        small = {"shape": (48, 48), "scale_factor": 6, "batch_size": 2, "steps": steps or 1}
        fast = (VARIANTS[0], VARIANTS[1])
        return [
            bench_training("cvae", "demo", variants=fast, device=device, **small),  # type: ignore[arg-type]
            bench_training("srdrn", "srdrn", overrides=_TINY_SRDRN, variants=fast,
                           device=device, **small),  # type: ignore[arg-type]
        ]  # fmt: skip
    no_compile = _variants(device, compile_too=False)
    gpu = device != "cpu"  # compiling the cVAE takes minutes on a 2-core CPU, seconds on a GPU node
    v3 = _variants(device, compile_too=True) if gpu else no_compile
    v1 = (*no_compile[:2], Variant("fp32 compile", compile=True))
    return [
        # the design notes' widths: v3 is base 96, v1 base 64 (their 1.9 and 3.3 samples/s)
        bench_training("cvae", "cvae_v3_phase2", steps=steps or (3 if gpu else 1), variants=v3,
                       device=device),
        bench_training("cvae", "cvae_v1_baseline", steps=steps or 2, variants=v1, device=device),
        bench_training("srdrn", "srdrn", steps=steps or 2, variants=_variants(device, True),
                       device=device),
    ]  # fmt: skip


def _generator(quick: bool, device: str, steps: int | None = None) -> dict[str, Any]:
    from downpour.bench.generator import bench_generator

    if quick:
        return bench_generator(widths=(4,), batch_size=2, steps=steps or 1, sample_inputs=1,
                               sample_members=4, shape=(48, 48), scale_factor=6,
                               device=device)  # fmt: skip
    # equal width: the v3 widths (base 96, d_z 128, d_x 96), then base 16
    return bench_generator(widths=(96, 16), steps=steps or 2, device=device)


def _sampling(quick: bool, device: str) -> dict[str, Any]:
    from downpour.bench.sampling import bench_sampling

    if quick:
        return bench_sampling("demo", events=1, members=4, shape=(48, 48), scale_factor=6,
                              device=device)  # fmt: skip
    return bench_sampling("cvae_v3_phase2", events=1, members=100, chunk=25, device=device)


def _loader(quick: bool) -> dict[str, Any]:
    from downpour.bench.loader import bench_loader

    return bench_loader(batches=4, epochs=2) if quick else bench_loader()


def _verification(quick: bool) -> dict[str, Any]:
    from downpour.bench.verification import bench_verification

    return bench_verification(days=40) if quick else bench_verification()


def _downscale(quick: bool, device: str) -> dict[str, Any]:
    from downpour.bench.downscale import bench_downscale

    if quick:
        small = ["data.embedded.height=48", "data.embedded.width=36", *_TINY_SRDRN[:2],
                 "srdrn.upsample_filters=8"]  # fmt: skip
        return bench_downscale((1, 2), overrides=small, forward_days=64, forward_repeats=1,
                               device=device, conservative=False)  # fmt: skip
    return bench_downscale((1, 10), device=device)


def run_bench(
    parts: Sequence[str] = PARTS,
    *,
    quick: bool = False,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    threads: int | None = None,
    steps: int | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run benchmark parts; write ``out_dir/results_<device>.json`` when given.

    Parameters
    ----------
    parts
        Subset of :data:`PARTS`.
    quick
        Tiny sizes (seconds; the figures only show that the code runs).
    device
        ``"cpu"`` or ``"cuda"``.
    out_dir
        Folder for the JSON (``RESULTS.md`` is written by :func:`write_results_md`);
        parts not run keep their figures from an existing JSON of the same device.
    threads
        ``torch.set_num_threads`` for the run, left set afterwards (default: torch's).
    steps
        Timed training steps of the ``training`` and ``generator`` parts
        (default: each benchmark's own count).
    echo
        Progress messages.

    Returns
    -------
    dict
        ``{"machine": {...}, "training": [...], "generator": {...}, "sampling": {...},
        "loader": {...}, "verification": {...}, "seconds": {part: s}}``.
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise DownpourError(f"unknown benchmark part(s) {unknown}; choose from {', '.join(PARTS)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DownpourError("--device cuda asked for, but torch sees no GPU; use --device cpu")
    if steps is not None and steps < 1:
        raise DownpourError(f"steps must be ≥ 1, got {steps}")
    if threads is not None:
        torch.set_num_threads(threads)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "device": device,
        "facts": machine_facts(),
        "seconds": {},
    }
    for part in PARTS:
        if part not in parts:
            continue
        echo(f"bench: {part} ...")
        t0 = time.perf_counter()
        if part == "machine":
            n = 512 if quick else 2048
            result["machine"] = {
                "matmul_fp32_gflops": matmul_ceiling(n, device=device),
                "matmul_bf16_gflops": matmul_ceiling(min(n, 1024), torch.bfloat16, device=device),
                "memcpy_gbps": memcpy_bandwidth(64 if quick else 512),
                "bf16_native": bf16_native(device),
            }
        elif part == "training":
            result["training"] = _training(quick, device, steps)
        elif part == "generator":
            result["generator"] = _generator(quick, device, steps)
            for line in result["generator"]["verdict"]:
                echo(f"bench: {line}")
        elif part == "sampling":
            result["sampling"] = _sampling(quick, device)
        elif part == "loader":
            result["loader"] = _loader(quick)
        elif part == "verification":
            result["verification"] = _verification(quick)
        else:
            result["downscale"] = _downscale(quick, device)
        result["seconds"][part] = time.perf_counter() - t0
        echo(f"bench: {part} took {result['seconds'][part]:.0f} s")
    if out_dir is not None:
        path = Path(out_dir) / f"results_{device.split(':')[0]}{'_quick' if quick else ''}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():  # a partial run (--only) keeps the other parts' figures
            kept = json.loads(path.read_text())
            for part in PARTS:
                if part not in parts and part in kept:
                    result[part] = kept[part]
                    result["seconds"][part] = kept["seconds"].get(part, 0.0)
            result["seconds"] = {p: result["seconds"][p] for p in PARTS if p in result["seconds"]}
        atomic_write_text(path, json.dumps(result, indent=1, default=float))
        result["path"] = str(path)
    return result
