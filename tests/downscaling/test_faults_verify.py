"""`downpour verify` under SIGKILL: the state folder (``--save-state``) and ``metrics/verify.json``.

Each test kills the writer midway in a subprocess (``tests/_faults.py``), checks
that the output path holds its old complete version, reruns the verification
here and compares the result with one written in one go.
"""

from __future__ import annotations

import json

import numpy as np

from _faults import leftovers, needs_sigkill, run_killed, tree
from _shared import assert_same_result, copy_run
from downpour.core.rundir import RunDir
from downpour.downscaling.verify import verify_run
from downpour.downscaling.verify_state import MANIFEST, load_state

pytestmark = needs_sigkill

OLD, NEW = "2002-01-01:2002-01-08", "2002-01-09:2002-01-20"
MODELS = ("bicubic", "bcsd")


def verify(run, **kw):
    return verify_run(run, checkpoints={}, baselines=MODELS, n_boot=20, figures=False,
                      echo=lambda *a: None, **kw)  # fmt: skip


def assert_same_states(got, ref) -> None:
    """Same manifest and, per model, the same accumulator state arrays (exactly)."""
    assert json.loads((got / MANIFEST).read_text()) == json.loads((ref / MANIFEST).read_text())
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in ref.iterdir())
    for name in MODELS:
        a, b = load_state(got / f"{name}.npz").state(), load_state(ref / f"{name}.npz").state()
        assert set(a) == set(b)
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), (name, k)


def test_killed_save_state_keeps_the_old_state_folder(quarter_jan_run, tmp_path):
    """Killed half-way through the second model's ``.npz``; the old folder stays whole."""
    folder = tmp_path / "state"
    verify(quarter_jan_run, period=OLD, save_state=folder)
    before = tree(folder)
    run_killed(f"""
        from downpour.downscaling.verify import verify_run
        kill_in_file_write(lambda n: n.startswith(".bcsd.npz."), call=2)
        verify_run({str(quarter_jan_run)!r}, checkpoints={{}}, baselines={MODELS!r}, n_boot=20,
                   figures=False, period={NEW!r}, save_state={str(folder)!r}, echo=print)
    """)
    assert tree(folder) == before
    assert len(leftovers(folder)) == 1
    verify(quarter_jan_run, period=NEW, save_state=folder)
    verify(quarter_jan_run, period=NEW, save_state=tmp_path / "reference")
    assert_same_states(folder, tmp_path / "reference")
    assert leftovers(folder) == []


def test_killed_verify_keeps_the_old_verify_json(quarter_jan_run, tmp_path):
    run = copy_run(quarter_jan_run, tmp_path / "run")
    path = RunDir(run).metrics("verify")
    verify(run, period=OLD)
    before = tree(path)
    run_killed(f"""
        from downpour.downscaling.verify import verify_run
        kill_in_file_write(lambda n: n.startswith(".verify.json."))
        verify_run({str(run)!r}, checkpoints={{}}, baselines={MODELS!r}, n_boot=20,
                   figures=False, period={NEW!r}, echo=print)
    """)
    assert tree(path) == before
    assert len(leftovers(path)) == 1
    verify(run, period=NEW)
    ref = copy_run(quarter_jan_run, tmp_path / "reference")
    verify(ref, period=NEW)
    got, want = (json.loads(RunDir(r).metrics("verify").read_text()) for r in (run, ref))
    assert got.pop("store") == str(RunDir(run).store) and want.pop("store")
    assert_same_result(got, want, rel=0.0)
    assert leftovers(path) == []
