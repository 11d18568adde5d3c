"""Training-step throughput of the cVAE and SRDRN, with and without fast paths.

One training step is what Lightning runs per batch: the module's loss
(forward, every loss term), ``backward`` and an Adam step, on a batch of
``B`` generated days at the store's grid (156×132 ← 13×11 by default).
Throughput is samples per second over ``steps`` timed steps after warm-up;
achieved GFLOP/s is the model FLOPs of one step (counted with
``torch.utils.flop_counter.FlopCounterMode``: convolutions, matmuls and
their gradients) divided by the step time, which the caller compares with
:func:`downpour.bench.machine.matmul_ceiling`.

Fast paths (each a :class:`Variant`): channels_last memory format, bf16
autocast, ``torch.compile``. They are the same switches training uses
(``train.channels_last``, ``train.precision``, ``train.compile``), applied
here through :func:`downpour.training.fast.prepare_net`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from downpour.bench.machine import PeakMemory
from downpour.config import Config, load_config
from downpour.models.fast import prepare_net, to_memory_format

__all__ = [
    "VARIANTS",
    "Variant",
    "bench_training",
    "fake_batch",
    "fake_info",
    "training_module",
    "training_step_fn",
]


@dataclass(frozen=True)
class Variant:
    """One combination of fast paths."""

    name: str
    channels_last: bool = False
    precision: str = "32"
    compile: bool = False


#: The variants measured by default, baseline first.
VARIANTS: tuple[Variant, ...] = (
    Variant("fp32"),
    Variant("fp32 channels_last", channels_last=True),
    Variant("bf16", precision="bf16-mixed"),
    Variant("bf16 channels_last", channels_last=True, precision="bf16-mixed"),
    Variant("bf16 channels_last compile", channels_last=True, precision="bf16-mixed", compile=True),
)


def fake_info(
    shape: tuple[int, int] = (156, 132), scale_factor: int = 12, x_channels: int = 2
) -> dict[str, Any]:
    """Store facts of a generated store (what the Lightning modules need)."""
    return {
        "x_channels": x_channels,
        "s_channels": 4,
        "shape": list(shape),
        "lowres_shape": [shape[0] // scale_factor, shape[1] // scale_factor],
        "scale_factor": scale_factor,
        "units": "mm/day",
        "thresholds": {"P90": 8.0, "P95": 14.0, "P99": 30.0},
        "wet_threshold": 0.1,
        "normalization": {"x_log1p": [True] + [False] * (x_channels - 1)},
        "precip_channels": [0],
    }


def fake_batch(
    info: dict[str, Any], batch_size: int, device: str = "cpu", seed: int = 0
) -> dict[str, torch.Tensor]:
    """Generate a batch as :class:`~downpour.downscaling.dataset.PrecipDataset` yields it.

    Returns ``x (B, C, h, w)``, ``s (B, 4, H, W)``, ``y (B, 1, H, W)`` (log1p of
    gamma rain, 40 % dry) and ``mask (B, 1, H, W)`` (70 % land).
    """
    g = torch.Generator().manual_seed(seed)
    h, w = info["shape"]
    lh, lw = info["lowres_shape"]
    rain = torch.distributions.Gamma(0.6, 0.1).sample((batch_size, 1, h, w))
    rain = torch.where(torch.rand(rain.shape, generator=g) < 0.4, 0.0, rain)
    batch = {
        "x": torch.randn(batch_size, info["x_channels"], lh, lw, generator=g),
        "s": torch.randn(batch_size, info["s_channels"], h, w, generator=g),
        "y": torch.log1p(rain),
        "mask": (torch.rand(1, 1, h, w, generator=g) < 0.7).expand(batch_size, 1, h, w).clone(),
    }
    return {k: v.to(device) for k, v in batch.items()}


def training_module(kind: str, cfg: Config, info: dict[str, Any]) -> Any:
    """Return the Lightning module that trains ``kind`` (``"cvae"`` or ``"srdrn"``) for ``cfg``."""
    if kind == "cvae":
        from downpour.downscaling.cvae_module import CVAEModule

        return CVAEModule(cfg, info)
    if kind == "srdrn":
        from downpour.downscaling.srdrn_module import SRDRNModule

        return SRDRNModule(cfg, info)
    raise ValueError(f"kind must be 'cvae' or 'srdrn', got {kind!r}")


def _loss(kind: str, module: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if kind == "cvae":
        return module.step_loss(batch)
    pred, truth, mask = module._forward(batch)
    return module.loss(pred, truth, mask)


def training_step_fn(
    kind: str, module: Any, batch: dict[str, torch.Tensor], opt: Any, autocast: Any
) -> Any:
    """Return a closure running one step: zero grads, loss under ``autocast``, backward, step."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = _loss(kind, module, batch)
        loss.backward()
        opt.step()

    return step


def count_step_flops(kind: str, module: Any, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one training step (forward and backward), counted by torch."""
    with FlopCounterMode(display=False) as counter:
        _loss(kind, module, batch).backward()
    module.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bench_training(
    kind: str,
    preset: str,
    *,
    overrides: list[str] | None = None,
    batch_size: int = 16,
    steps: int = 3,
    variants: tuple[Variant, ...] = VARIANTS,
    device: str = "cpu",
    shape: tuple[int, int] = (156, 132),
    scale_factor: int = 12,
) -> dict[str, Any]:
    """Samples/s and GFLOP/s of training steps, one figure per variant.

    Parameters
    ----------
    kind
        ``"cvae"`` or ``"srdrn"``.
    preset
        Config preset (``cvae_v3_phase2``, ``srdrn``, ...).
    overrides
        ``section.key=value`` overrides of the preset.
    batch_size, steps
        Batch size and number of timed steps (after one warm-up step).
    variants
        Fast-path combinations to measure.
    device
        ``"cpu"`` or ``"cuda"``.
    shape, scale_factor
        High-res grid and scale factor of the generated batch.

    Returns
    -------
    dict
        ``{"kind", "preset", "parameters", "gflop_per_sample", "batch_size",
        "variants": [{"name", "samples_per_s", "step_s", "gflops",
        "peak_mb", "compile_s", ...}]}``.
    """
    cfg = load_config(preset, overrides or [])
    info = fake_info(shape, scale_factor)
    batch = fake_batch(info, batch_size, device)
    torch.manual_seed(0)
    base = training_module(kind, cfg, info).to(device)
    flops = count_step_flops(kind, base, batch)
    out: dict[str, Any] = {
        "kind": kind,
        "preset": preset,
        "overrides": list(overrides or []),
        "parameters": sum(p.numel() for p in base.net.parameters()),
        "gflop_per_sample": flops / batch_size / 1e9,
        "batch_size": batch_size,
        "shape": list(shape),
        "device": device,
        "variants": [],
    }
    state = {k: v.clone() for k, v in base.state_dict().items()}
    for var in variants:
        torch.manual_seed(0)
        module = training_module(kind, cfg, info).to(device)
        module.load_state_dict(state)
        module.train()
        t_compile = time.perf_counter()
        module.net = prepare_net(module.net, channels_last=var.channels_last, compile=var.compile)
        b = {k: to_memory_format(v, var.channels_last) for k, v in batch.items()}
        opt = torch.optim.Adam(module.parameters(), lr=1e-4)
        autocast = (
            torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
            if var.precision == "bf16-mixed"
            else contextlib.nullcontext()
        )

        step = training_step_fn(kind, module, b, opt, autocast)

        try:
            step()  # warm-up (and compilation)
        except Exception as exc:  # a fast path unsupported here is a result, not a crash
            out["variants"].append({**asdict(var), "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        if device != "cpu":
            torch.cuda.synchronize()
        first = time.perf_counter() - t_compile
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            if device != "cpu":
                torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / steps
        out["variants"].append(
            {
                **asdict(var),
                "samples_per_s": batch_size / dt,
                "step_s": dt,
                "gflops": flops / dt / 1e9,
                "first_step_s": first,
                "peak_mb": mem.peak_mb,
                "gpu_peak_mb": mem.gpu_peak_mb,
            }
        )
    return out
