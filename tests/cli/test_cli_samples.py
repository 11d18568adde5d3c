"""`downpour sample`, `merge-samples`, `augment`, `evaluate` and `compare` on the small run."""

import csv
import datetime as dt
import json

import numpy as np
import xarray as xr
from click.testing import CliRunner

from _shared import copy_run, cvae_checkpoint, opened
from downpour.cli.main import cli
from downpour.downscaling.quality import read_quality
from downpour.downscaling.sampling import load_cvae, sample_cvae

JAN = (dt.date(2001, 1, 1), dt.date(2001, 1, 20))
JAN12 = dt.date(2001, 1, 12)


ckpt = cvae_checkpoint


def strs(a) -> np.ndarray:
    return np.array([str(v) for v in np.asarray(a)])


def open_(path) -> xr.Dataset:
    return xr.open_zarr(path, consolidated=False, chunks=None)


def test_cli_sample(trained_run, tmp_path):
    trained = copy_run(trained_run, tmp_path / "run")  # the samples are written into the run
    res = CliRunner().invoke(
        cli,
        [
            "sample",
            "--checkpoint",
            str(ckpt(trained)),
            "--set",
            "sampling.members=2",
            "--set",
            "sampling.mode=prior",
        ],
    )
    assert res.exit_code == 0, res.output
    out = trained / "samples" / "prior_train.zarr"
    assert out.is_dir() and "2 members" in res.output
    assert xr.open_zarr(out, consolidated=False).sizes["member"] == 2


def test_cli_sample_periods_and_merge(trained_run, tmp_path):
    trained_run = copy_run(trained_run, tmp_path / "run")  # the shards are written into the run
    run = CliRunner()
    common = ["sample", "--checkpoint", str(ckpt(trained_run)), "--set", "sampling.days=all"]
    common += ["--set", "sampling.members=2", "--set", "sampling.seed=11"]
    for period in ("2001-01-01:2001-01-05", "2001-01-06:2001-01-12"):
        res = run.invoke(cli, [*common, "--period", period])
        assert res.exit_code == 0, res.output
    samples = trained_run / "samples"
    shards = [
        samples / "posterior_train_2001-01-01_2001-01-05.zarr",
        samples / "posterior_train_2001-01-06_2001-01-12.zarr",
    ]
    assert "7 events × 2 members" in " ".join(res.output.split())  # rich wraps lines
    out = tmp_path / "merged.zarr"
    res = run.invoke(cli, ["merge-samples", *map(str, shards), "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "12 events (2001-01-01 to 2001-01-12) × 2 members from 2 shards" in text
    single = sample_cvae(
        [ckpt(trained_run)],
        trained_run / "data" / "store.zarr",
        load_cvae(ckpt(trained_run))[1].sampling.model_copy(  # the CLI's default: the run's
            update={"days": "all", "members": 2, "seed": 11, "period": (JAN[0], JAN12)}
        ),
        progress=False,
    )
    np.testing.assert_array_equal(opened(out)["samples"].values, single["samples"].values)
    # errors: a bad period, an overlap
    res = run.invoke(cli, [*common, "--period", "2001-02-30:2001-03"])
    assert res.exit_code == 2 and "--period: period '2001-02-30:2001-03'" in res.output
    assert "day is out of range for month" in " ".join(res.output.split())
    res = run.invoke(cli, ["merge-samples", str(shards[0]), str(shards[0]), "--out", str(out)])
    assert res.exit_code == 2 and "shards overlap: 5 day(s)" in " ".join(res.output.split())


def test_cli_augment(sampled_run, tmp_path):
    store = sampled_run / "data" / "store.zarr"
    samples = sampled_run / "samples" / "posterior_train.zarr"
    out = tmp_path / "cli.zarr"
    args = ["augment", str(samples), "--store", str(store), "--out", str(out)]
    res = CliRunner().invoke(cli, [*args, "--set", "augment.ratio=0.05"])
    assert res.exit_code == 0, res.output
    ag = open_(out)
    n_train = int((strs(open_(store)["split"].values) == "train").sum())
    assert int(ag["is_synthetic"].values.sum()) == round(0.05 * n_train)
    assert "synthetic" in res.output


def test_cli_evaluate_and_compare(sampled_run, tmp_path):
    runner = CliRunner()
    samples = sampled_run / "samples" / "posterior_train.zarr"
    run_a, run_b = tmp_path / "v1", tmp_path / "v2"
    res = runner.invoke(cli, ["evaluate", str(samples), "--out", str(run_a), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "diversity" in res.output and "posterior mode" in res.output
    assert "CRPS ECDF / fair" in res.output and "RAPSD ratio" in res.output
    assert not (run_a / "figures").exists()
    (run_b / "metrics").mkdir(parents=True)
    summary = read_quality(run_a)["posterior_train"]
    (run_b / "metrics" / "sample_quality.json").write_text(
        json.dumps({"posterior_train": {**summary, "diversity": 0.25}})
    )
    (run_b / "metrics" / "verify.json").write_text(json.dumps({"headline": {"CSI_P95": 0.12}}))
    out = tmp_path / "cmp"
    res = runner.invoke(cli, ["compare", str(run_a), str(run_b), "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "compare.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| posterior_train: diversity"))
    assert row == f"| posterior_train: diversity | {summary['diversity']:.3f} | 0.250 |"
    assert "| verify: CSI_P95 | – | 0.120 |" in md
    rows = {r[0]: r[1:] for r in csv.reader((out / "compare.csv").open())}
    assert rows["metric"] == ["v1", "v2"]
    assert float(rows["posterior_train: diversity"][1]) == 0.25


def test_cli_evaluate_missing_variable(tmp_path):
    bad = tmp_path / "bad.zarr"
    xr.Dataset({"samples": (("event", "member", "y", "x"), np.zeros((1, 2, 3, 3)))}).to_zarr(bad)
    res = CliRunner().invoke(cli, ["evaluate", str(bad)])
    assert res.exit_code == 2
    assert "variable 'target' is missing" in res.output and str(bad) in res.output
