"""RESULTS.md: target lines computed from the figures."""

from __future__ import annotations

from downpour.bench.report import results_markdown


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
