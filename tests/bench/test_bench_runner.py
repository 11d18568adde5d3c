"""run_bench: a quick run writes consistent JSON and RESULTS.md; partial runs keep the rest.

Figures are never asserted against wall-clock limits; what is checked is
that each figure is computed from its definition (rates = work / measured time).
"""

from __future__ import annotations

import json

import pytest

from downpour.bench import run_bench, write_results_md


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
