"""The atomic writers of ``core/files.py`` under SIGKILL: old or nothing, never half; reruns clean.

Each test runs the writer in a subprocess that kills itself midway
(``tests/_faults.py``), then checks the output path and reruns the writer here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _faults import leftovers, needs_sigkill, run_killed, tree
from downpour.core import files
from downpour.core.files import atomic_dir, atomic_write_text, recover

pytestmark = needs_sigkill

HERE = str(Path(__file__).parent)
OLD = "old line\n" * 2000
NEW = "new line\n" * 3000


def write_tree(root, version: str) -> None:
    """The folder written by the directory tests: three files and a subfolder."""
    (root / "sub").mkdir()
    for k in range(3):
        (root / "sub" / f"f{k}.txt").write_text(f"{version} {k}\n" * 500)
    (root / "top.txt").write_text(version)


def reference(tmp_path, version: str):
    with atomic_dir(tmp_path / "reference" / "out") as tmp:
        write_tree(tmp, version)
    return tree(tmp_path / "reference" / "out")


@pytest.mark.parametrize("old", [True, False], ids=["over-old", "new-path"])
@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
def test_killed_text_write_leaves_old_or_nothing(tmp_path, old, where):
    path = tmp_path / "out.txt"
    if old:
        atomic_write_text(path, OLD)
    before = tree(path)
    kill = {
        "mid-write": "kill_in_file_write(lambda n: n.startswith('.out.txt.'))",
        "before-rename": "import os; kill_at(os, 'replace', when=lambda s, d: str(d) == P)",
    }[where]
    run_killed(f"""
        from downpour.core.files import atomic_write_text
        P = {str(path)!r}
        {kill}
        atomic_write_text(P, {NEW!r})
    """)
    assert tree(path) == before
    if old:
        assert path.read_text() == OLD
    assert len(leftovers(path)) == 1  # the killed writer's temporary
    atomic_write_text(path, NEW)
    assert path.read_text() == NEW
    assert leftovers(path) == []  # removed by the next write


@pytest.mark.parametrize("where", ["filling", "after-swap"])
def test_killed_directory_write_leaves_the_old_tree(tmp_path, where):
    path = tmp_path / "out"
    with atomic_dir(path) as tmp:
        write_tree(tmp, "old")
    before = tree(path)
    kill = {  # half-way through the files, or once the new tree is in place (old not removed)
        "filling": "kill_in_file_write(lambda n: n == 'f1.txt')",
        "after-swap": "from downpour.core import files; kill_at(files, '_remove')",
    }[where]
    run_killed(f"""
        import sys
        sys.path.insert(0, {HERE!r})
        from test_faults_files import write_tree
        from downpour.core.files import atomic_dir
        from pathlib import Path
        {kill}
        with atomic_dir({str(path)!r}) as tmp:
            write_tree(tmp, "new")
    """)
    if where == "filling":
        assert tree(path) == before
    else:  # the swap is one step: the new tree is complete at the path
        assert tree(path) == reference(tmp_path, "new")
    assert len(leftovers(path)) == 1
    with atomic_dir(path) as tmp:
        write_tree(tmp, "new")
    assert tree(path) == reference(tmp_path, "new")
    assert leftovers(path) == []


def test_without_an_atomic_swap_the_window_is_two_renames_and_recover_closes_it(tmp_path):
    """Where ``renameat2(RENAME_EXCHANGE)`` is refused, a kill between the two renames leaves the
    path empty and the old tree, complete, in ``.NAME.*.old``; recover() puts it back."""
    path = tmp_path / "out"
    with atomic_dir(path) as tmp:
        write_tree(tmp, "old")
    before = tree(path)
    run_killed(f"""
        import os, sys
        sys.path.insert(0, {HERE!r})
        from test_faults_files import write_tree
        from downpour.core import files
        files._exchange = lambda a, b: False
        P = {str(path)!r}
        kill_at(os, "replace", when=lambda s, d: str(d) == P)  # the second rename
        with files.atomic_dir(P) as tmp:
            write_tree(tmp, "new")
    """)
    assert tree(path) is None  # the window
    olds = [n for n in leftovers(path) if n.endswith(".old")]
    assert len(olds) == 1 and tree(tmp_path / olds[0]) == before
    recover(path)
    assert tree(path) == before
    assert leftovers(path) == []


def test_the_fallback_rename_path_writes_and_replaces(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    path = tmp_path / "out"
    for version in ("old", "new"):
        with atomic_dir(path) as tmp:
            write_tree(tmp, version)
    assert tree(path) == reference(tmp_path, "new")
    assert leftovers(path) == []


def test_the_next_write_removes_only_temporaries_of_dead_writers(tmp_path):
    """A live writer's temporaries and another host's stay; a dead or reused pid's go."""
    path = tmp_path / "out.txt"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    try:
        host, me, gone = files._HOST, os.getpid(), int(dead.stdout)
        names = {
            "live": f".out.txt.{host}-{live.pid}-{files._start_time(live.pid)}-abc.tmp",
            "dead": f".out.txt.{host}-{gone}-123-abc.tmp",
            "dead old": f".out.txt.{host}-{gone}-123-abc.old",
            "reused pid": f".out.txt.{host}-{me}-1-abc.tmp",  # same id, other start time
            "other host": f".out.txt.other{host}-{gone}-123-abc.tmp",
            "not ours": ".out.txt.backup",
        }
        for name in names.values():
            (tmp_path / name).write_text("x")
        atomic_write_text(path, NEW)
        stay = ("live", "other host", "not ours")
        assert leftovers(path) == sorted(names[k] for k in stay)
    finally:
        live.kill()
        live.wait()


def test_outputs_get_the_permissions_of_plainly_created_files(tmp_path):
    """Not the private modes of ``mkstemp``/``mkdtemp``: others may read a run's outputs."""
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", NEW)
        with atomic_dir(tmp_path / "d") as tmp:
            write_tree(tmp, "new")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
