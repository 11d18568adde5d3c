"""`downpour report` under SIGKILL: ``RUN/report.html`` is the old report or the new one, whole."""

from __future__ import annotations

import re

from _faults import leftovers, needs_sigkill, run_killed, tree
from _shared import copy_run
from downpour.core.rundir import RunDir
from downpour.downscaling.verify import verify_run
from downpour.report.html import write_report

pytestmark = needs_sigkill


def body(path) -> str:
    """The report without its time stamp."""
    return re.sub(r"Written \d{4}-\d\d-\d\d \d\d:\d\d UTC", "Written <time>", path.read_text())


def test_killed_report_keeps_the_old_report(quarter_jan_run, tmp_path):
    run = copy_run(quarter_jan_run, tmp_path / "run")
    verify_run(run, checkpoints={}, baselines=("bicubic",), n_boot=20, figures=False,
               period="2002-01-01:2002-01-10", echo=lambda *a: None)  # fmt: skip
    path = write_report(run, summary="the old verdict")
    assert path == RunDir(run).report
    before = tree(path)
    run_killed(f"""
        from downpour.report.html import write_report
        kill_in_file_write(lambda n: n.startswith(".report.html."))
        write_report({str(run)!r}, summary="the new verdict")
    """)
    assert tree(path) == before
    assert len(leftovers(path)) == 1
    write_report(run, summary="the new verdict")
    ref = write_report(run, tmp_path / "reference.html", summary="the new verdict")
    assert body(path) == body(ref)
    assert "the new verdict" in body(path) and body(path).rstrip().endswith("</html>")
    assert leftovers(path) == []
