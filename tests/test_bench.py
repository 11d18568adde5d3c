"""The benchmark machinery: FLOP counting, ceilings, memory, JSON and RESULTS.md.

Figures are never asserted against wall-clock limits; what is checked is
that each figure is computed from its definition (FLOPs against a
hand-counted reference, rates = work / measured time, tables from the JSON).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from downpour.bench import machine, run_bench, write_results_md
from downpour.bench.report import results_markdown
from downpour.bench.runner import bf16_native
from downpour.bench.training import _module, count_step_flops, fake_batch, fake_info
from downpour.cli.main import cli
from downpour.config import TrainConfig, load_config
from downpour.training.trainer import warn_slow_bf16

TINY_SRDRN = [
    "srdrn.filters=8", "srdrn.res_blocks=2", "srdrn.upsample=[2,3]", "srdrn.upsample_filters=8",
]  # fmt: skip


def test_srdrn_step_flops_equal_the_hand_count():
    """Every conv costs 2·Cin·Cout·k²·H·W·B forward, as much again for each gradient."""
    cfg = load_config("srdrn", TINY_SRDRN)
    info = fake_info((48, 48), 6)
    batch = fake_batch(info, 3)
    module = _module("srdrn", cfg, info)
    convs: list[float] = []

    def hook(mod: torch.nn.Conv2d, inp: tuple, out: torch.Tensor) -> None:
        b, c_out, h, w = out.shape
        k = mod.kernel_size[0] * mod.kernel_size[1]
        convs.append(2.0 * mod.in_channels * c_out * k * h * w * b)

    for m in module.net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        module.net(batch["x"])
    forward = sum(convs)
    # backward: weight gradients of every conv, input gradients of all but the first
    # (the data needs none)
    expected = forward + forward + (forward - convs[0])
    assert count_step_flops("srdrn", module, batch) == pytest.approx(expected, rel=1e-12)


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


def test_quick_run_writes_consistent_json_and_markdown(tmp_path):
    res = run_bench(["machine", "training", "sampling"], quick=True, out_dir=tmp_path,
                    echo=lambda m: None)  # fmt: skip
    stored = json.loads((tmp_path / "results_cpu_quick.json").read_text())
    assert stored["training"][0]["preset"] == "demo"
    for t in res["training"]:
        flops = t["gflop_per_sample"] * t["batch_size"]
        for v in t["variants"]:
            assert v["samples_per_s"] == pytest.approx(t["batch_size"] / v["step_s"])
            assert v["gflops"] == pytest.approx(flops / v["step_s"])
    for v in res["sampling"]["variants"]:
        assert v["samples_per_s"] == pytest.approx(4 / v["seconds"])  # 1 event × 4 members
    md = write_results_md(tmp_path).read_text()
    assert "quick run: figures meaningless" in md
    assert md.count("| cvae | demo") == 2 and md.count("| srdrn | srdrn") == 2


def test_results_markdown_targets_from_figures():
    """The target lines are the measured figures divided by the design notes' and the ceiling."""
    res = {
        "date": "2026-01-01T00:00:00+00:00", "quick": False, "device": "cpu",
        "facts": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "torch": "2", "numpy": "2",
                  "python": "3.11", "gpu": None},
        "seconds": {"machine": 1.0, "training": 2.0},
        "machine": {"matmul_fp32_gflops": 100.0, "matmul_bf16_gflops": 1.0, "memcpy_gbps": 10.0,
                    "bf16_native": False},
        "training": [{
            "kind": "cvae", "preset": "cvae_v1_baseline", "parameters": 5_700_000,
            "gflop_per_sample": 25.0, "batch_size": 16, "shape": [156, 132],
            "variants": [
                {"name": "fp32", "precision": "32", "samples_per_s": 2.0, "gflops": 50.0,
                 "first_step_s": 9.0, "peak_mb": 3000.0},
                {"name": "fp32 channels_last", "precision": "32", "samples_per_s": 4.95,
                 "gflops": 123.75, "first_step_s": 4.0, "peak_mb": 3000.0},
            ],
        }],
    }  # fmt: skip
    md = results_markdown([res])
    row = "| cvae_v1_baseline (5.7 M, 25.0 GFLOP/sample) | fp32 channels_last | 4.95 | 2.48× |"
    assert row in md
    assert "4.95 samples/s (fp32 channels_last) = 1.50× the design notes' 3.3" in md
    assert "124 % of the matmul ceiling" in md
    assert "no native bf16 kernels here" in md


def test_bf16_warning_matches_the_hardware():
    cfg = TrainConfig(precision="bf16-mixed", accelerator="cpu")
    if bf16_native("cpu"):
        assert warn_slow_bf16(cfg) is False
    else:
        with pytest.warns(UserWarning, match="without native bf16 kernels"):
            assert warn_slow_bf16(cfg) is True
    assert warn_slow_bf16(TrainConfig(precision="32", accelerator="cpu")) is False


def test_cli_writes_results(tmp_path):
    out = tmp_path / "bench"
    r = CliRunner().invoke(cli, ["bench", "--quick", "--only", "machine", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "results_cpu_quick.json").read_text())
    assert set(data["seconds"]) == {"machine"}
    assert data["machine"]["matmul_fp32_gflops"] > 0
    assert "matmul ceiling fp32" in (out / "RESULTS.md").read_text()
    bad = CliRunner().invoke(cli, ["bench", "--only", "nothing"])
    assert bad.exit_code != 0 and "nothing" in bad.output


def test_partial_run_keeps_the_other_parts(tmp_path):
    path = tmp_path / "results_cpu_quick.json"
    old = {"date": "x", "quick": True, "device": "cpu", "facts": {}, "seconds": {"loader": 7.0},
           "loader": {"workers": {"0": 123.0}}}  # fmt: skip
    path.write_text(json.dumps(old))
    run_bench(["machine"], quick=True, out_dir=tmp_path, echo=lambda m: None)
    new = json.loads(path.read_text())
    assert new["loader"] == {"workers": {"0": 123.0}}
    assert new["seconds"]["loader"] == 7.0 and list(new["seconds"]) == ["machine", "loader"]
    assert new["machine"]["matmul_fp32_gflops"] > 0
