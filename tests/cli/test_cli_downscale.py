"""`downpour downscale` on the command line: the file, the range warning, one-line refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from click.testing import CliRunner

from downpour.cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tiny_srdrn) -> tuple[Path, Path]:
    """``(run, checkpoint)`` of the shared tiny SRDRN (tests/conftest.py)."""
    return tiny_srdrn


@pytest.fixture(scope="module")
def source(trained) -> xr.Dataset:
    with xr.open_dataset(trained[0] / "data" / "source" / "embedded_lr.nc") as ds:
        return ds.load()


def invoke(*args):
    return CliRunner().invoke(cli, ["downscale", *[str(a) for a in args]])


def test_downscale_writes_a_cf_file(trained, tmp_path):
    _, ckpt = trained
    out = tmp_path / "jan.nc"
    res = invoke("--checkpoint", ckpt, "--period", "2002-01-01:2002-01-10", "--out", out)
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stdout and "10 time" in res.stdout and "srdrn" in res.stdout
    assert "warning" not in res.stderr
    with xr.open_dataset(out) as ds:
        assert ds["pr"].dims == ("time", "lat", "lon") and ds.sizes["time"] == 10
        assert ds["pr"].attrs["units"] == "mm day-1" and ds.attrs["Conventions"] == "CF-1.8"


def test_out_of_range_predictors_print_a_warning_line(trained, source, tmp_path):
    _, ckpt = trained
    wet = source.copy()
    wet["pr"] = source["pr"] * 4
    path = tmp_path / "wet.nc"
    wet.to_netcdf(path)
    out = tmp_path / "wet.zarr"
    res = invoke("--checkpoint", ckpt, "--predictors", path, "--period", "2001-07:2001-07",
                 "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert "predictor values outside the training range (2001-01-01 to 2001-03-31)" in line
    assert "pr 0.0% below /" in line and out.is_dir()


def write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_netcdf(path)
    return path


def bad_cases(run: Path, ckpt: Path, src: xr.Dataset, root: Path) -> dict[str, tuple[list, str]]:
    """``name → (arguments after the command, text the error line names)``."""
    root.mkdir(parents=True, exist_ok=True)
    gkg = src.copy()
    gkg["q"] = (src["q"] * 1000).assign_attrs(units="g kg-1")
    cfg = root / "other.yaml"
    lr = run / "data" / "source" / "embedded_lr.nc"
    cfg.write_text(
        "data:\n  predictors:\n"
        f"    - {{path: {lr}, variable: pr, kind: precip, name: rain}}\n"
        f"    - {{path: {lr}, variable: q, name: q}}\n"
    )
    raw = torch.load(ckpt, weights_only=False)
    for key in ("grid", "mask", "predictor_range"):
        raw["downpour"]["info"].pop(key)
    old = root / "old.ckpt"
    torch.save(raw, old)
    return {
        "variable": (
            ["--checkpoint", ckpt, "--predictors", write(src.rename({"q": "hus"}), root / "v.nc")],
            "no file holds the variable 'q'",
        ),
        "units": (
            ["--checkpoint", ckpt, "--predictors", write(gkg, root / "u.nc")],
            "units 'g kg-1'",
        ),
        "grid": (
            [
                "--checkpoint",
                ckpt,
                "--predictors",
                write(src.isel(lat=slice(2, None)), root / "g.nc"),
            ],  # fmt: skip
            "does not cover the target's low-res cells",
        ),
        "dataset": (["--checkpoint", ckpt, "--config", cfg], "checkpoint of another dataset"),
        "period": (["--checkpoint", ckpt, "--period", "1950:1960"], "holds none of the 730"),
        "old checkpoint": (["--checkpoint", old], "pass --run RUN"),
        "baseline without run": (["--baseline", "bcsd"], "needs --run RUN"),
        "unknown baseline": (["--baseline", "nearest", "--run", run], "bicubic"),
        "probability of one field": (
            ["--checkpoint", ckpt, "--output", "probability", "--threshold", "5"],
            "needs a distributional model",
        ),
        "bad period": (["--checkpoint", ckpt, "--period", "2002"], "--period"),
        "negative threshold": (
            ["--checkpoint", ckpt, "--output", "probability", "--threshold", "-1"],
            "cannot be negative",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "variable",
        "units",
        "grid",
        "dataset",
        "period",
        "old checkpoint",
        "baseline without run",
        "unknown baseline",
        "probability of one field",
        "bad period",
        "negative threshold",
    ],  # fmt: skip
)
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(trained, source, tmp_path, case):
    run, ckpt = trained
    args, text = bad_cases(run, ckpt, source, tmp_path / "inputs")[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.nc"
    res = invoke(*args, "--out", out)
    detail = f"exit {res.exit_code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), detail
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), detail
    assert text in lines[0] and "Traceback" not in res.output, detail
    assert list(out_dir.iterdir()) == [], "something was written"
    assert not np.any([p.name.startswith(".") for p in out_dir.parent.iterdir()])
