"""Comparing runs: errors, markdown cells."""

import pytest

from downpour.report.compare import compare_runs, to_markdown


def test_compare_errors(tmp_path):
    from downpour.core.errors import DownpourError

    with pytest.raises(DownpourError, match="has no metrics/ folder"):
        compare_runs([tmp_path])
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "sample_quality.json").write_text("{broken")
    with pytest.raises(DownpourError, match="sample_quality.json is not valid JSON"):
        compare_runs([tmp_path])


def test_markdown_cells():
    md = to_markdown(["a"], ["x", "y", "z"], [[1234567], [None], [[0.1, 0.05, 0.2]]])
    assert "| x | 1,234,567 |" in md and "| y | – |" in md and "| z | 0.100 [0.050, 0.200] |" in md
