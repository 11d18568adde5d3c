"""`downpour verify --period --save-state`, `verify-merge`; `compare` is in test_cli_samples.py."""

from __future__ import annotations

import json

from click.testing import CliRunner

from _shared import assert_same_result, copy_run
from downpour.cli.main import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.output.split())


def test_verify_in_two_periods_then_merge_equals_one_pass(quarter_jan_run, tmp_path):
    run = copy_run(quarter_jan_run, tmp_path / "run")  # verify writes metrics/ into the run
    code, out = invoke("verify", run, "--n-boot", "100", "--no-figures")
    assert code == 0, out
    one = json.loads((run / "metrics" / "verify.json").read_text())
    first, second = tmp_path / "first", tmp_path / "second"
    code, out = invoke("verify", run, "--period", "2002-01:2002-01-15", "--save-state", first)
    assert code == 0 and "saved 15 days of 2 models" in out, out
    code, out = invoke("verify", run, "--period", "2002-01-16:2002-01-31", "--save-state", second)
    assert code == 0, out
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["days"] == ["2002-01-01", "2002-01-15"] and manifest["n_days"] == 15
    assert manifest["models"] == {"bicubic": "bicubic.npz", "bcsd": "bcsd.npz"}
    merged_json = tmp_path / "verify.json"
    code, out = invoke("verify-merge", second, first, "--out", merged_json, "--n-boot", "100")
    assert code == 0 and "merged 2 pieces: 31 days from 2002-01-01 to 2002-01-31" in out, out
    merged = json.loads(merged_json.read_text())
    assert merged["period"] == ["2002-01-01", "2002-01-31"]
    assert merged["parts"] == [str(second), str(first)]
    for key in ("store", "parts", "period"):
        merged.pop(key)
        one.pop(key, None)
    assert merged["models"]["bcsd"]["n_days"] == 31
    assert_same_result(merged, one)  # counts exactly, scores and intervals to 1e-12

    code, out = invoke("verify-merge", first, first, "--out", tmp_path / "twice.json")
    assert code == 2
    assert "cannot merge 'bicubic'" in out and "15 day(s) are in both" in out
    assert "the first 2002-01-01" in out
    code, out = invoke("verify", run, "--period", "2005:2006", "--save-state", tmp_path / "x")
    assert code == 2
    assert "period 2005-01-01:2006-12-31 holds none of the 31 real test days" in out
    assert "they cover 2002-01-01 to 2002-01-31" in out
