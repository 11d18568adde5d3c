"""The ensemble generator against the design notes' cVAE, members/s at equal width (issue 12).

The issue's target: the default generator architecture (``model.arch:
lowres``) at least 5× faster *per member* than the notes' network at equal
width, with fewer than 30 M parameters. Both networks are built in the same
process from the same preset and widths (``cvae_v3_phase2``: base 96, d_z
128, d_x 96; optionally narrower) and stepped on the same generated batch
(:func:`~downpour.bench.training.fake_batch`, 156×132 ← 13×11 by default),
fp32, one after the other:

- the reference (:data:`ARMS`' first row): the pyramid cVAE with its own
  ELBO training step; one member per sample;
- the generators: the preset with :data:`GENERATOR_OVERRIDES` (ensemble
  objective, ``loss.members`` = M members per input), with the preset's
  residual blocks and attention, and without them (the lowres defaults).

Figures per network (``rows``):

- training members/s: members per step (B for the reference, B·M for a
  generator) / the mean time of ``steps`` timed steps (after ``warmup``);
  a step is the module's ``step_loss``, ``backward`` and an Adam step, as in
  :mod:`downpour.bench.training`;
- GFLOP per member of a training step (:func:`~downpour.bench.training.
  count_step_flops` / members per step) and of sampling (forward, eval mode,
  prior: :func:`sample_flops` of ``sample_members`` members per input / the
  members), split into the part shared by an input's members (encoders,
  trunk) and the cost of one more member (the decoder), from the FLOPs of 1
  and 2 members;
- sampling members/s: ``net.sample(x, s, sample_members, mode="prior")`` on
  ``sample_inputs`` inputs, decoded ``sample_members`` fields at a time;
- parameters, and the peak resident memory of the timed training steps
  (:class:`~downpour.bench.machine.PeakMemory`; the whole process, so it
  includes what earlier rows left resident, and ``delta_mb`` the growth).

:func:`speedups` divides each generator's rates by the reference's at the
same width; :func:`verdict_lines` states them against the target.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from downpour.bench.machine import PeakMemory, machine_facts
from downpour.bench.training import (
    count_step_flops,
    fake_batch,
    fake_info,
    training_module,
    training_step_fn,
)
from downpour.config import load_config

__all__ = [
    "ARMS",
    "GENERATOR_OVERRIDES",
    "TARGET_MAX_PARAMETERS",
    "TARGET_SPEEDUP",
    "Arm",
    "bench_generator",
    "sample_flops",
    "speedups",
    "verdict_lines",
]

#: The issue's target: generator members/s ÷ reference members/s, at equal width.
TARGET_SPEEDUP = 5.0
#: The issue's target: the generator has fewer parameters than this.
TARGET_MAX_PARAMETERS = 30_000_000

#: What turns the v3 preset into the ensemble generator (``loss.members`` is added per run).
GENERATOR_OVERRIDES: tuple[str, ...] = (
    "model.arch=lowres", "model.skips=false", "loss.objective=ensemble", "loss.beta_kl=0",
    "loss.lambda_sparse=0", "loss.lambda_focal=0",
)  # fmt: skip


@dataclass(frozen=True)
class Arm:
    """One network of the comparison: a role and the overrides of the preset that build it."""

    name: str
    role: str  # "reference" or "generator"
    overrides: tuple[str, ...] = ()
    default: bool = False  # the generator architecture the target is about


#: The networks measured, the reference first.
ARMS: tuple[Arm, ...] = (
    Arm("pyramid cVAE, ELBO step (design notes)", "reference"),
    Arm("lowres, res blocks + attention", "generator", GENERATOR_OVERRIDES),
    Arm(
        "lowres, no res blocks / attention (defaults, as the demo runs it)",
        "generator",
        (*GENERATOR_OVERRIDES, "model.res_blocks=false", "model.attention=false"),
        default=True,
    ),
)


def sample_flops(net: nn.Module, x: torch.Tensor, s: torch.Tensor, n: int) -> float:
    """FLOPs of ``net.sample(x, s, n, mode="prior")`` (eval mode, all fields decoded at once).

    Parameters
    ----------
    net
        A :class:`~downpour.models.cvae.CVAE` or
        :class:`~downpour.models.generator.LowResGenerator`.
    x, s
        ``(B, C, h, w)`` predictors and ``(B, S, H, W)`` statics.
    n
        Members per input (``B·n`` fields).
    """
    gen = torch.Generator(device=x.device).manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        net.sample(x, s, n, mode="prior", generator=gen)
    return float(counter.get_total_flops())


def _sampling(
    net: nn.Module, x: torch.Tensor, s: torch.Tensor, members: int, device: str
) -> dict[str, Any]:
    """FLOPs and members/s of prior sampling, ``members`` per input of ``x``."""
    inputs = x.shape[0]
    f1, f2, fn = (sample_flops(net, x, s, n) for n in (1, 2, members))
    per_member = (f2 - f1) / inputs  # one more member of one input: the decoder
    gen = torch.Generator(device=device).manual_seed(0)
    net.sample(x, s, 1, mode="prior", generator=gen)  # warm-up
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        net.sample(x, s, members, mode="prior", generator=gen, chunk=members)
        if device != "cpu":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return {
        "gflop_sample_per_member": fn / (inputs * members) / 1e9,
        "gflop_decoder_per_member": per_member / 1e9,
        "gflop_shared_per_input": (f1 / inputs - per_member) / 1e9,
        "sample_members_per_s": inputs * members / seconds,
        "sample_s": seconds,
        "sample_peak_mb": mem.peak_mb,
    }


def _row(
    arm: Arm,
    preset: str,
    width: int,
    members: int,
    info: dict[str, Any],
    batch: dict[str, torch.Tensor],
    *,
    warmup: int,
    steps: int,
    sample_inputs: int,
    sample_members: int,
    device: str,
) -> dict[str, Any]:
    """Measure one network (training step, FLOPs, sampling) at base width ``width``."""
    overrides = [*arm.overrides, f"model.base_filters={width}"]
    if arm.role == "generator":
        overrides.append(f"loss.members={members}")
    cfg = load_config(preset, overrides)
    torch.manual_seed(0)
    module = training_module("cvae", cfg, info).to(device)
    module.train()
    per_step = batch["x"].shape[0] * (members if arm.role == "generator" else 1)
    flops = count_step_flops("cvae", module, batch)
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    step = training_step_fn("cvae", module, batch, opt, contextlib.nullcontext())
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    first = (time.perf_counter() - t0) / max(warmup, 1)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if device != "cpu":
            torch.cuda.synchronize()
        step_s = (time.perf_counter() - t0) / steps
    opt.zero_grad(set_to_none=True)
    del opt, step
    net = module.net.eval()
    x, s = batch["x"][:sample_inputs], batch["s"][:sample_inputs]
    with torch.no_grad():
        sampling = _sampling(net, x, s, sample_members, device)
    return {
        "name": arm.name,
        "role": arm.role,
        "default": arm.default,
        "base_filters": width,
        "d_z": cfg.model.d_z,
        "d_x": cfg.model.d_x,
        "overrides": overrides,
        "parameters": sum(p.numel() for p in net.parameters()),
        "members_per_step": per_step,
        "gflop_step_per_member": flops / per_step / 1e9,
        "train_members_per_s": per_step / step_s,
        "step_s": step_s,
        "warmup_step_s": first,
        "peak_mb": mem.peak_mb,
        "delta_mb": mem.delta_mb,
        "gpu_peak_mb": mem.gpu_peak_mb,
        **sampling,
    }


def speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each generator row against the reference row of the same width.

    Returns
    -------
    list of dict
        ``{"base_filters", "name", "default", "parameters", "train_speedup",
        "sample_speedup", "step_flop_ratio", "sample_flop_ratio", "meets_target"}``;
        speed-ups are generator members/s ÷ reference members/s, FLOP ratios
        reference GFLOP per member ÷ generator GFLOP per member.
    """
    refs = {r["base_filters"]: r for r in rows if r["role"] == "reference"}
    out = []
    for g in rows:
        ref = refs.get(g["base_filters"])
        if g["role"] != "generator" or ref is None:
            continue
        train = g["train_members_per_s"] / ref["train_members_per_s"]
        out.append(
            {
                "base_filters": g["base_filters"],
                "name": g["name"],
                "default": g["default"],
                "parameters": g["parameters"],
                "train_speedup": train,
                "sample_speedup": g["sample_members_per_s"] / ref["sample_members_per_s"],
                "step_flop_ratio": ref["gflop_step_per_member"] / g["gflop_step_per_member"],
                "sample_flop_ratio": ref["gflop_sample_per_member"] / g["gflop_sample_per_member"],
                "meets_target": bool(
                    train >= TARGET_SPEEDUP and g["parameters"] < TARGET_MAX_PARAMETERS
                ),
            }
        )
    return out


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """One line per generator: its speed-ups and parameters against the issue's target."""
    lines = []
    for r in result["speedups"]:
        lines.append(
            f"base {r['base_filters']}, {r['name']}: training {r['train_speedup']:.2f}× and "
            f"sampling {r['sample_speedup']:.2f}× the reference's members/s, "
            f"{r['parameters'] / 1e6:.2f} M parameters → target (≥ {TARGET_SPEEDUP:g}× per "
            f"member in training, < {TARGET_MAX_PARAMETERS / 1e6:g} M parameters) "
            + ("met" if r["meets_target"] else "not met")
        )
    return lines


def bench_generator(
    preset: str = "cvae_v3_phase2",
    *,
    widths: tuple[int, ...] = (96,),
    arms: tuple[Arm, ...] = ARMS,
    members: int = 4,
    batch_size: int = 16,
    warmup: int = 1,
    steps: int = 2,
    sample_inputs: int = 2,
    sample_members: int = 16,
    device: str = "cpu",
    shape: tuple[int, int] = (156, 132),
    scale_factor: int = 12,
) -> dict[str, Any]:
    """Training and sampling members/s of the generator and the reference, side by side.

    Parameters
    ----------
    preset
        Config preset of the reference (the generators add their overrides).
    widths
        ``model.base_filters`` values; every arm is measured at each (d_z and
        d_x stay the preset's).
    arms
        Networks to measure (:data:`ARMS`); :func:`speedups` needs a reference.
    members
        ``loss.members`` of the generators (members per input per step).
    batch_size
        Inputs per training step.
    warmup, steps
        Untimed and timed training steps.
    sample_inputs, sample_members
        Inputs and members per input of the timed sampling call.
    device
        ``"cpu"`` or ``"cuda"``.
    shape, scale_factor
        High-res grid and scale factor of the generated batch.

    Returns
    -------
    dict
        Settings (``preset``, ``batch_size``, ``members``, ``threads``, ...),
        ``rows`` (one per arm and width; keys in the module docstring),
        ``speedups`` (:func:`speedups`) and ``verdict`` (:func:`verdict_lines`).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps ≥ 1 and warmup ≥ 0, got {steps}, {warmup}")
    info = fake_info(shape, scale_factor)
    batch = fake_batch(info, batch_size, device)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "preset": preset,
        "precision": "fp32",
        "device": device,
        "cpu": machine_facts()["cpu"],
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "members": members,
        "shape": list(shape),
        "lowres_shape": list(info["lowres_shape"]),
        "warmup": warmup,
        "steps": steps,
        "sample_inputs": sample_inputs,
        "sample_members": sample_members,
        "rows": [],
    }
    sizes = {"warmup": warmup, "steps": steps, "sample_inputs": sample_inputs,
             "sample_members": sample_members, "device": device}  # fmt: skip
    for width in widths:
        for arm in arms:
            result["rows"].append(_row(arm, preset, width, members, info, batch, **sizes))
    result["speedups"] = speedups(result["rows"])
    result["verdict"] = verdict_lines(result)
    return result
