"""Sampling throughput: K members per event from a cVAE, fields per second.

The network is the preset's cVAE with its initial weights (throughput does
not depend on training); ``events`` generated days are drawn ``members``
times each through :meth:`downpour.models.cvae.CVAE.sample`, which decodes
the members of an event batch in chunks of at most ``chunk`` fields.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from downpour.bench.machine import PeakMemory
from downpour.bench.training import fake_batch, fake_info
from downpour.config import load_config
from downpour.models.cvae import CVAE
from downpour.models.fast import prepare_net, to_memory_format

__all__ = ["bench_sampling"]


def bench_sampling(
    preset: str,
    *,
    overrides: list[str] | None = None,
    events: int = 2,
    members: int = 100,
    mode: str = "prior",
    wet_rule: str = "calibrated",
    chunk: int = 64,
    channels_last: tuple[bool, ...] = (False, True),
    device: str = "cpu",
    shape: tuple[int, int] = (156, 132),
    scale_factor: int = 12,
) -> dict[str, Any]:
    """Fields generated per second with ``members`` members per event.

    Parameters
    ----------
    preset, overrides
        The cVAE configuration.
    events, members
        Events per call and members per event (``events × members`` fields).
    mode, wet_rule
        As :meth:`~downpour.models.cvae.CVAE.sample`.
    chunk
        Largest number of fields decoded at once.
    channels_last
        Memory formats to measure.
    device
        ``"cpu"`` or ``"cuda"``.
    shape, scale_factor
        Grid of the generated events.

    Returns
    -------
    dict
        ``{"preset", "members", "events", "variants": [{"channels_last",
        "samples_per_s", "seconds", "peak_mb"}]}``.
    """
    cfg = load_config(preset, overrides or [])
    info = fake_info(shape, scale_factor)
    batch = fake_batch(info, events, device)
    mask = batch["mask"][0, 0]
    out: dict[str, Any] = {
        "preset": preset,
        "overrides": list(overrides or []),
        "members": members,
        "events": events,
        "mode": mode,
        "chunk": chunk,
        "device": device,
        "variants": [],
    }
    for cl in channels_last:
        torch.manual_seed(0)
        net = CVAE(
            cfg.model,
            x_channels=info["x_channels"],
            s_channels=info["s_channels"],
            shape=shape,
            scale_factor=scale_factor,
        ).to(device)
        prepare_net(net, channels_last=cl)
        x, s, y = (to_memory_format(batch[k], cl) for k in ("x", "s", "y"))

        def draw(n: int, net: CVAE = net, x: torch.Tensor = x, s: torch.Tensor = s,
                 y: torch.Tensor = y) -> torch.Tensor:  # fmt: skip
            gen = torch.Generator(device=device).manual_seed(0)
            return net.sample(
                x, s, n, mode=mode, y=y if mode == "posterior" else None,  # type: ignore[arg-type]
                generator=gen, wet_rule=wet_rule, mask=mask, chunk=chunk,  # type: ignore[arg-type]
            )  # fmt: skip

        draw(1)  # warm-up
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            fields = draw(members)
            if device != "cpu":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        out["variants"].append(
            {
                "channels_last": cl,
                "samples_per_s": fields.shape[0] * fields.shape[1] / dt,
                "seconds": dt,
                "peak_mb": mem.peak_mb,
                "gpu_peak_mb": mem.gpu_peak_mb,
            }
        )
    return out
