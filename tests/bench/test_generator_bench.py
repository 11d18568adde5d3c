"""The generator-vs-cVAE benchmark: rows, FLOP counts against hand counts, ratios from rows.

Tiny sizes (24×24 ← 4×4, base 4, batch 2, one timed step); no wall-clock
figure is asserted, only that each figure follows from its definition.
"""

from __future__ import annotations

import json

import pytest

from downpour.bench import PARTS, run_bench, write_results_md
from downpour.bench.generator import (
    ARMS,
    TARGET_SPEEDUP,
    bench_generator,
    sample_flops,
    speedups,
    verdict_lines,
)
from downpour.bench.report import results_markdown
from downpour.bench.training import count_step_flops, fake_batch, fake_info, training_module
from downpour.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE, SCALE, BASE, BATCH, MEMBERS, SAMPLE = (24, 24), 6, 4, 2, 3, 3


@pytest.fixture(scope="module")
def result() -> dict:
    return bench_generator(
        widths=(BASE,), members=MEMBERS, batch_size=BATCH, steps=1, sample_inputs=1,
        sample_members=SAMPLE, shape=SHAPE, scale_factor=SCALE,
    )  # fmt: skip


def _fresh(row: dict) -> tuple:
    info = fake_info(SHAPE, SCALE)
    return training_module("cvae", load_config("cvae_v3_phase2", row["overrides"]), info), info


def test_the_part_returns_the_reference_and_both_generators_with_every_key(result):
    keys = {
        "name", "role", "base_filters", "d_z", "d_x", "parameters", "members_per_step",
        "gflop_step_per_member", "train_members_per_s", "step_s", "peak_mb", "delta_mb",
        "gflop_sample_per_member", "gflop_decoder_per_member", "gflop_shared_per_input",
        "sample_members_per_s", "sample_s",
    }  # fmt: skip
    rows = result["rows"]
    assert [r["role"] for r in rows] == ["reference", "generator", "generator"]
    assert [r["name"] for r in rows] == [a.name for a in ARMS]
    for r in rows:
        assert keys <= set(r), keys - set(r)
        assert (r["base_filters"], r["d_z"], r["d_x"]) == (BASE, 128, 96)  # equal width
    assert "model.arch=lowres" not in rows[0]["overrides"]
    assert f"loss.members={MEMBERS}" in rows[1]["overrides"]
    assert "model.res_blocks=false" in rows[2]["overrides"] and rows[2]["default"]
    assert result["precision"] == "fp32" and result["threads"] == 1
    json.dumps(result)  # storable as it is


def test_step_flops_per_member_equal_count_step_flops_of_the_same_module(result):
    """Reference: B members per step; generator: B·M; the FLOPs are count_step_flops'."""
    for row, per_step in zip(
        result["rows"], (BATCH, BATCH * MEMBERS, BATCH * MEMBERS), strict=True
    ):
        module, info = _fresh(row)
        assert row["members_per_step"] == per_step
        flops = count_step_flops("cvae", module, fake_batch(info, BATCH))
        assert row["gflop_step_per_member"] * per_step * 1e9 == pytest.approx(flops, rel=1e-12)


def test_generator_member_flops_equal_the_hand_count(result):
    """Without res blocks/attention a member's decoder is one 3×3 conv + FiLM per stage + head.

    Stages ×2 then ×3 from 4×4: 8×8 (4·base → 2·base channels), 24×24 (2·base → base);
    every stage also gets 4 noise, 4 static and 2 injected predictor channels.
    """
    row = result["rows"][2]
    b, extra, d_z = BASE, 4 + 4 + 2, 128
    expected = 0.0
    for c_in, c_out, cells in ((4 * b, 2 * b, 8 * 8), (2 * b, b, 24 * 24)):
        expected += 2 * (c_in + extra) * c_out * 9 * cells  # 3×3 conv
        expected += 2 * d_z * 2 * c_out  # FiLM's linear γ, β
    expected += 2 * b * 1 * 24 * 24  # 1×1 head
    assert row["gflop_decoder_per_member"] * 1e9 == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_sampling_flops_grow_linearly_with_the_members(result, index):
    """FLOPs(n) = shared + n · per member, and the row's per-member figures obey it."""
    row = result["rows"][index]
    module, info = _fresh(row)
    net = module.net.eval()
    batch = fake_batch(info, 1)
    f1, f2, f3, fn = (sample_flops(net, batch["x"], batch["s"], n) for n in (1, 2, 3, SAMPLE))
    assert f3 - f2 == pytest.approx(f2 - f1, rel=1e-12)
    assert row["gflop_decoder_per_member"] * 1e9 == pytest.approx(f2 - f1, rel=1e-12)
    shared = row["gflop_shared_per_input"] * 1e9
    assert shared + SAMPLE * (f2 - f1) == pytest.approx(fn, rel=1e-12)
    assert row["gflop_sample_per_member"] * 1e9 * SAMPLE == pytest.approx(fn, rel=1e-12)


def test_rates_and_ratios_follow_from_the_rows(result):
    rows = result["rows"]
    for r in rows:
        assert r["train_members_per_s"] == pytest.approx(r["members_per_step"] / r["step_s"])
        assert r["sample_members_per_s"] == pytest.approx(SAMPLE / r["sample_s"])
    ref = rows[0]
    assert result["speedups"] == speedups(rows)
    for s, g in zip(result["speedups"], rows[1:], strict=True):
        assert s["name"] == g["name"]
        assert s["train_speedup"] == pytest.approx(
            g["train_members_per_s"] / ref["train_members_per_s"]
        )
        assert s["sample_speedup"] == pytest.approx(
            g["sample_members_per_s"] / ref["sample_members_per_s"]
        )
        assert s["step_flop_ratio"] == pytest.approx(
            ref["gflop_step_per_member"] / g["gflop_step_per_member"]
        )
        assert s["meets_target"] == (s["train_speedup"] >= TARGET_SPEEDUP)  # < 30 M here
    assert result["verdict"] == verdict_lines(result) and len(result["verdict"]) == 2


def test_verdict_against_the_target():
    rows = [
        {"role": "reference", "base_filters": 96, "train_members_per_s": 0.5,
         "sample_members_per_s": 2.0, "gflop_step_per_member": 90.0,
         "gflop_sample_per_member": 20.0},
        {"role": "generator", "name": "fast", "default": True, "base_filters": 96,
         "parameters": 2_000_000, "train_members_per_s": 2.5, "sample_members_per_s": 8.0,
         "gflop_step_per_member": 20.0, "gflop_sample_per_member": 5.0},
        {"role": "generator", "name": "big", "default": False, "base_filters": 96,
         "parameters": 31_000_000, "train_members_per_s": 5.0, "sample_members_per_s": 8.0,
         "gflop_step_per_member": 20.0, "gflop_sample_per_member": 5.0},
    ]  # fmt: skip
    fast, big = speedups(rows)
    assert fast["train_speedup"] == pytest.approx(5.0) and fast["meets_target"]
    assert big["train_speedup"] == pytest.approx(10.0) and not big["meets_target"]
    lines = verdict_lines({"speedups": [fast, big]})
    assert lines[0].startswith("base 96, fast: training 5.00× and sampling 4.00×")
    assert lines[0].endswith("met") and lines[1].endswith("not met")


def test_quick_run_stores_the_part_and_results_md_shows_it(tmp_path):
    assert "generator" in PARTS
    res = run_bench(["generator"], quick=True, out_dir=tmp_path, threads=1, steps=1,
                    echo=lambda m: None)  # fmt: skip
    stored = json.loads((tmp_path / "results_cpu_quick.json").read_text())
    assert stored["generator"]["steps"] == 1 and stored["generator"]["threads"] == 1
    assert [r["role"] for r in res["generator"]["rows"]] == ["reference", "generator", "generator"]
    md = write_results_md(tmp_path).read_text()
    assert "### Generator vs the design notes' cVAE (issue 12)" in md
    for line in res["generator"]["verdict"]:
        assert f"- {line}" in md
    assert "### Generator" not in results_markdown([{**stored, "generator": None}])


def test_cli_offers_every_part():
    from downpour.cli.bench import bench

    choice = next(p for p in bench.params if p.name == "parts").type
    assert tuple(choice.choices) == PARTS
