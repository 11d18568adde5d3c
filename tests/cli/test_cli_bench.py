"""`downpour bench`: writes results, refuses unknown parts."""

from __future__ import annotations

import json

from click.testing import CliRunner

from downpour.cli.main import cli


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
