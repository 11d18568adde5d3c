"""``RESULTS.md`` from the ``results_*.json`` files of ``downpour bench``.

Every figure comes from the JSON; the targets are those of the performance
issue: at least 3× the design notes' cVAE training samples/s at equal width
(3.3 samples/s at base 64, 1.9 at base 96; fp32, batch 16, 156×132, 2-core
CPU), a training step at half the measured matmul ceiling or more, and
verification 2× faster than pysteps and ``scores`` at 30 % or more of the
memory-copy bandwidth; ``downpour downscale`` of ten years at 80 % or more of
the network's bare forward days/s, in memory independent of the years; and
(issue 12) the ensemble generator at least 5× the cVAE's members/s at equal
width with fewer than 30 M parameters (:mod:`downpour.bench.generator`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from downpour.core.files import atomic_write_text

__all__ = ["DESIGN_NOTES_SAMPLES_PER_S", "results_markdown", "write_results_md"]

#: The design notes' cVAE training throughput (fp32, batch 16, 156×132, 2-core CPU) by base width.
DESIGN_NOTES_SAMPLES_PER_S: dict[int, float] = {64: 3.3, 96: 1.9}


def _f(x: Any, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _machine(res: dict[str, Any]) -> list[str]:
    f, m = res["facts"], res.get("machine", {})
    rows = [
        ["CPU", f"{f['cpu']} ({f['cores']} cores, torch uses {f['torch_threads']} threads)"],
        ["GPU", f["gpu"] or "none"],
        ["torch / numpy / python", f"{f['torch']} / {f['numpy']} / {f['python']}"],
    ]
    if m:
        rows += [
            ["matmul ceiling fp32", f"{_f(m['matmul_fp32_gflops'])} GFLOP/s"],
            ["matmul bf16", f"{_f(m['matmul_bf16_gflops'])} GFLOP/s"
                            + ("" if m["bf16_native"] else " (no native bf16 kernels here)")],
            ["memory copy", f"{_f(m['memcpy_gbps'], 2)} GB/s (bytes read)"],
        ]  # fmt: skip
    return _table(["", ""], rows)


def _training(res: dict[str, Any]) -> list[str]:
    ceiling = res.get("machine", {}).get("matmul_fp32_gflops")
    rows = []
    for t in res.get("training", []):
        base = None
        for v in t["variants"]:
            if "error" in v:
                rows.append([t["kind"], t["preset"], v["name"], "failed: " + v["error"]] + [""] * 5)
                continue
            base = base or v["samples_per_s"]
            frac = v["gflops"] / ceiling if ceiling else None
            rows.append(
                [
                    t["kind"],
                    f"{t['preset']} ({t['parameters'] / 1e6:.1f} M, "
                    f"{t['gflop_per_sample']:.1f} GFLOP/sample)",
                    v["name"],
                    _f(v["samples_per_s"], 2),
                    f"{v['samples_per_s'] / base:.2f}×",
                    _f(v["gflops"]),
                    "–" if frac is None else f"{100 * frac:.0f} %",
                    _f(v["first_step_s"]),
                    _f(v["peak_mb"], 0),
                ]
            )
    shapes = {(t["batch_size"], *t["shape"]) for t in res.get("training", [])}
    lines = [
        "Batch " + ", ".join(f"{b} on {h}×{w}" for b, h, w in sorted(shapes))
        + "; GFLOP/s = the step's FLOPs (torch's FlopCounterMode) / step time.\n"
    ]  # fmt: skip
    lines += _table(
        ["model", "preset", "fast path", "samples/s", "vs fp32", "GFLOP/s", "of matmul ceiling",
         "first step s", "peak MB"],
        rows,
    )  # fmt: skip
    return lines + _training_targets(res)


def _training_targets(res: dict[str, Any]) -> list[str]:
    from downpour.config import load_config

    lines = []
    ceiling = res.get("machine", {}).get("matmul_fp32_gflops")
    for t in res.get("training", []):
        if t["kind"] != "cvae" or res.get("quick"):
            continue
        width = load_config(t["preset"]).model.base_filters
        theirs = DESIGN_NOTES_SAMPLES_PER_S.get(width)
        ok = [v for v in t["variants"] if "error" not in v]
        if theirs is None or not ok:
            continue
        fp32 = [v for v in ok if v["precision"] == "32"]
        best = max(fp32 or ok, key=lambda v: v["samples_per_s"])
        lines.append(
            f"- {t['preset']} (base {width}): best fp32 {best['samples_per_s']:.2f} samples/s "
            f"({best['name']}) = {best['samples_per_s'] / theirs:.2f}× the design notes' "
            f"{theirs} samples/s (target 3×)"
            + (f"; {100 * best['gflops'] / ceiling:.0f} % of the matmul ceiling (target 50 %)"
               if ceiling else "")
        )  # fmt: skip
    return lines + [""] if lines else []


def _generator(res: dict[str, Any]) -> list[str]:
    g = res.get("generator")
    if not g:
        return []
    from downpour.bench.generator import verdict_lines

    (h, w), (lh, lw) = g["shape"], g["lowres_shape"]
    row0 = g["rows"][0]
    lines = [
        f"{g['preset']} at equal width (d_z {row0['d_z']}, d_x {row0['d_x']}; base as listed), "
        f"{g['precision']}, {g['device']} ({g['cpu']}, {res['facts'].get('cores', '?')} cores), "
        f"{g['threads']} torch thread(s), run "
        f"{g['date']}. Training: the same generated batch of {g['batch_size']} inputs at "
        f"{h}×{w} ← {lh}×{lw}; the reference steps its ELBO (one member per sample), a "
        f"generator its ensemble loss on {g['members']} members per input; {g['warmup']} "
        f"warm-up and {g['steps']} timed step(s) of loss, backward and Adam. Sampling: "
        f'`net.sample(x, s, {g["sample_members"]}, mode="prior")` on {g["sample_inputs"]} '
        "input(s), eval mode. GFLOP per member (torch's FlopCounterMode): the sampling "
        "forward, with in brackets the part an input's members share (encoders, trunk) and "
        "the cost of each member (decoder), and the training step (forward and backward). "
        "Peak MB: resident memory of the whole process during the timed steps (growth over "
        "its size on entry in brackets).\n"
    ]
    speed = {(s["base_filters"], s["name"]): s for s in g.get("speedups", [])}
    rows = []
    for r in g["rows"]:
        s = speed.get((r["base_filters"], r["name"]))
        rows.append([
            str(r["base_filters"]), r["name"], f"{r['parameters'] / 1e6:.2f} M",
            f"{r['gflop_sample_per_member']:.2f} ({r['gflop_shared_per_input']:.2f} per input; "
            f"{r['gflop_decoder_per_member']:.2f} per member)",
            _f(r["gflop_step_per_member"], 2), _f(r["train_members_per_s"], 2),
            "1×" if s is None else f"{s['train_speedup']:.2f}×",
            _f(r["sample_members_per_s"], 2),
            "1×" if s is None else f"{s['sample_speedup']:.2f}×",
            f"{r['peak_mb']:,.0f} ({r['delta_mb']:+,.0f})",
        ])  # fmt: skip
    lines += _table(
        ["base", "network", "parameters", "GFLOP/member, sampling",
         "GFLOP/member, training step", "training members/s", "vs reference",
         "sampling members/s", "vs reference", "peak MB (growth)"], rows)  # fmt: skip
    return lines + [f"- {line}" for line in verdict_lines(g)] + [""]


def _sampling(res: dict[str, Any]) -> list[str]:
    s = res.get("sampling")
    if not s:
        return []
    rows = [
        ["channels_last" if v["channels_last"] else "fp32", _f(v["samples_per_s"], 2),
         _f(v["seconds"]), _f(v["peak_mb"], 0)]
        for v in s["variants"]
    ]  # fmt: skip
    head = (
        f"{s['preset']}, {s['events']} event(s) × {s['members']} members, {s['mode']} mode, "
        f"decoded {s['chunk']} fields at a time:\n"
    )
    return [head] + _table(["memory format", "fields/s", "seconds", "peak MB"], rows)


def _loader(res: dict[str, Any]) -> list[str]:
    ld = res.get("loader")
    if not ld:
        return []
    consume = [
        v["samples_per_s"]
        for t in res.get("training", [])
        for v in t["variants"]
        if t["kind"] == "cvae" and "samples_per_s" in v
    ]
    rows = [[f"{w} worker(s), one day per chunk", _f(r, 0)] for w, r in ld["workers"].items()]
    rows += [[f"{w} worker(s), 365 days per chunk", _f(r, 0)] for w, r in ld["year_chunks"].items()]
    lines = _table(["loader (flips + noise, batch 16)", "samples/s"], rows)
    p = ld["persistent"]
    lines.append(
        f"Persistent workers (2 workers, {p['epochs']} epochs of {p['batches_per_epoch']} "
        f"batches): {p['off_s']:.2f} s restarted each epoch, {p['on_s']:.2f} s persistent."
    )
    if ld.get("pinned"):
        lines.append(
            f"Pinned memory (host → GPU): {ld['pinned']['off']:.0f} samples/s unpinned, "
            f"{ld['pinned']['on']:.0f} pinned."
        )
    else:
        lines.append("Pinned memory: not measured (no GPU; pinning only speeds host → GPU copies).")
    if ld.get("peak_growth_mb") is not None:
        lines.append(
            f"Resident memory grew by at most {ld['peak_growth_mb']:,.0f} MB during the loader "
            "part (store preparation included)."
        )
    if consume:
        lines.append(
            f"Training consumes at most {max(consume):.1f} samples/s (cVAE rows above): one "
            f"loader process supplies {ld['workers']['0'] / max(consume):.0f}× that."
        )
    return lines + [""]


def _verification(res: dict[str, Any]) -> list[str]:
    v = res.get("verification")
    if not v:
        return []
    ours = v["ours"]
    lines = [
        f"Arrays of {v.get('days')} days × {v.get('shape', ['?'])[1:]} (float32); "
        f"memory copy {v['memcpy_gbps']:.2f} GB/s in the same run.\n"
    ]
    share = f"{100 * ours['fraction_of_memcpy']:.1f} %"
    rows = [["downpour", _f(ours["seconds"], 2), _f(ours["gbps"], 3), share, "1×", "",
             _f(ours.get("peak_mb"), 0)]]  # fmt: skip
    for lib in ("pysteps", "scores"):
        o = v.get(lib)
        if not o or "seconds" not in o:
            rows.append([lib, "not installed" if not o else str(o.get("error", "–"))] + [""] * 5)
            continue
        diffs = ", ".join(f"{k} {d:.1e}" for k, d in o.get("max_abs_diff", {}).items())
        rows.append(
            [lib + (" (extrapolated)" if o.get("extrapolated") else ""), _f(o["seconds"], 2),
             _f(o["gbps"], 3), "", f"{o['speedup']:.1f}× slower", diffs, "–"]
        )  # fmt: skip
    return lines + _table(
        ["implementation", "seconds", "GB/s", "of memcpy", "vs downpour", "max |Δ| vs downpour",
         "peak MB (allocations of one call)"], rows)  # fmt: skip


def _downscale(res: dict[str, Any]) -> list[str]:
    d = res.get("downscale")
    if not d:
        return []
    fwd = d["forward"]
    h, w = d["lowres_shape"]
    ny, nx = d["predictor_grid"]
    lines = [
        f"{d['preset']} SRDRN ({fwd['parameters']:,} parameters), {h}×{w} → "
        f"{d['shape'][0]}×{d['shape'][1]}, batch {d['batch_size']}, {d['threads']} torch "
        f"thread(s), {d.get('device', 'cpu')}, run {d.get('date', '?')}. Bare forward "
        f"(`net(x)`, best of the timed passes): **{fwd['days_per_s']:.1f} days/s**. End to "
        "end: one `downscale()` call "
        f"writing NetCDF, in a fresh process; predictors in kg m-2 s-1 on their own {ny}×{nx} "
        "grid (1.25× coarser, longitudes 0…360) or on the low-res grid. Seconds: read "
        "(read, convert, regrid), forward (normalise, network), write (NetCDF, zlib 1), other "
        "(set-up, masking, range counts).\n"
    ]
    rows = []
    for r in d["runs"]:
        grid = f"own grid, {r['regrid']}" if r["grid"] == "own" else "low-res grid"
        sp = r["split"]
        rows.append([f"{r['years']} y, {grid}", str(r["days"]), _f(r["days_per_s"]),
                     f"{100 * r['ratio']:.0f} %", *(_f(sp[k], 2) for k in
                     ("read", "forward", "write", "other")), _f(r["seconds"], 1),
                     _f(r["peak_rss_mb"], 0)])  # fmt: skip
    lines += _table(["predictors", "days", "days/s", "of bare forward", "read s", "forward s",
                     "write s", "other s", "total s", "peak RSS MB"], rows)  # fmt: skip
    if any(r["regrid"] == "conservative" for r in d["runs"]):
        lines.append("- conservative: its read time includes importing xarray-regrid (once)")
    own = {r["years"]: r for r in d["runs"] if r["grid"] == "own" and r["regrid"] == "bilinear"}
    if len(own) > 1:
        few, most = own[min(own)], own[max(own)]
        lines.append(
            f"- peak resident memory {few['peak_rss_mb']:,.0f} MB for {min(own)} year(s), "
            f"{most['peak_rss_mb']:,.0f} MB for {max(own)} (target: independent of the years; "
            f"{most['start_rss_mb']:,.0f} MB after imports)"
        )
        lines.append(
            f"- {max(own)} years end to end: {100 * most['ratio']:.0f} % of the bare forward "
            "days/s (target 80 %)"
        )
    return lines + [""]


def results_markdown(results: list[dict[str, Any]]) -> str:
    """Return the Markdown of ``RESULTS.md`` for one or more results dicts (one per device)."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `downpour bench` (regenerate it with the same command; the figures "
        "are measurements on a shared machine, not pass/fail limits). Definitions: "
        "`src/downpour/bench/`.",
        "",
    ]
    if not any(r["device"].startswith("cuda") and not r["quick"] for r in results):
        lines += [
            "No GPU run yet: `downpour bench --device cuda` on a GPU machine adds one "
            "(bf16 and torch.compile training of cVAE v3 and the paper-size SRDRN).",
            "",
        ]
    downscale = "Downscale (`downpour downscale`, end to end)"
    for res in results:
        title = res["facts"]["gpu"] or res["facts"]["cpu"]
        total = sum(res["seconds"].values())
        lines += [
            f"## {res['device']}: {title}"
            + (" (quick run: figures meaningless)" if res["quick"] else ""),
            "",
            f"Run {res['date']}, {total / 60:.1f} min in all "
            f"({', '.join(f'{k} {v:.0f} s' for k, v in res['seconds'].items())}).",
            "",
            "### Machine",
            "",
            *_machine(res),
        ]  # fmt: skip
        for name, part in (("Training step (forward, every loss term, backward, Adam)", _training),
                           ("Generator vs the design notes' cVAE (issue 12)", _generator),
                           ("Sampling", _sampling), ("Data loader", _loader),
                           ("Verification", _verification),
                           (downscale, _downscale)):  # fmt: skip
            body = part(res)
            if body:
                lines += [f"### {name}", "", *body]
    return "\n".join(lines).rstrip() + "\n"


def write_results_md(out_dir: str | Path) -> Path:
    """Regenerate ``out_dir/RESULTS.md`` from every ``results_*.json`` there (quick runs last)."""
    out_dir = Path(out_dir)
    files = sorted(out_dir.glob("results_*.json"), key=lambda p: ("quick" in p.name, p.name))
    results = [json.loads(p.read_text()) for p in files]
    return atomic_write_text(out_dir / "RESULTS.md", results_markdown(results))
