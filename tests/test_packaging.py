"""A wheel built from the repository works when installed the ordinary way.

The wheel is built from a copy of the repository (so the working tree gets no
build folders), installed without dependencies into a fresh virtual
environment, and run from outside the repository; the dependencies come from
the test environment's site-packages on ``PYTHONPATH``, whose ``.pth`` files
(the editable install of this checkout) are not read from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (ROOT / "src" / "downpour" / "config" / "presets").glob("*.yaml"))


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)])  # fmt: skip
    (whl,) = out.glob("downpour-*.whl")
    return whl


def test_wheel_ships_every_preset(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).stem for n in names if n.startswith("downpour/config/presets/"))
    assert shipped == PRESETS and "demo" in shipped


def test_installed_wheel_runs_and_finds_every_preset(wheel: Path, tmp_path: Path):
    env = tmp_path / "env"
    run([sys.executable, "-m", "venv", str(env)])
    bindir = env / ("Scripts" if os.name == "nt" else "bin")
    run(
        [
            str(bindir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    deps = sysconfig.get_paths()["purelib"]
    environ = {**os.environ, "PYTHONPATH": deps}
    where = run(
        [str(bindir / "python"), "-c", "import downpour; print(downpour.__file__)"],
        cwd=tmp_path, env=environ,
    ).stdout.strip()  # fmt: skip
    assert Path(where).resolve().is_relative_to(env.resolve()), where
    helped = run([str(bindir / "downpour"), "demo", "--help"], cwd=tmp_path, env=environ).stdout
    assert "Run the main job on the embedded dataset" in helped
    code = (
        "from downpour.config import PRESET_DIR, load_config\n"
        "names = sorted(p.stem for p in PRESET_DIR.glob('*.yaml'))\n"
        "print(' '.join(names)); print(' '.join(load_config(n).name for n in names))"
    )
    found, loaded = run(
        [str(bindir / "python"), "-c", code], cwd=tmp_path, env=environ
    ).stdout.split("\n")[:2]
    assert found.split() == PRESETS
    assert len(loaded.split()) == len(PRESETS)
