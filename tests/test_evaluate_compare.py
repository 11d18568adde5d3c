"""downpour evaluate and compare: JSON, figures, tables, from the CLI and the Python API."""

import csv
import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from downpour.cli.main import cli
from downpour.downscaling.quality import evaluate, read_quality
from downpour.metrics.sample_quality import evaluate_samples
from downpour.report import figures as plots
from downpour.report.compare import compare_runs, to_markdown

PNG = b"\x89PNG\r\n\x1a\n"


def test_evaluate_writes_json_and_figures(sampled_run, tmp_path):
    samples = sampled_run / "samples" / "posterior_train.zarr"
    q = evaluate(samples, tmp_path)
    ds = xr.open_zarr(samples, consolidated=False, chunks=None)
    direct = evaluate_samples(ds).summary
    saved = read_quality(tmp_path)["posterior_train"]
    for key in ("diversity", "spatial_correlation", "mass_bias", "wet_fraction_generated"):
        assert saved[key] == pytest.approx(direct[key]) == pytest.approx(q.summary[key])
    assert saved["mode"] == "posterior" and saved["members"] == 3
    assert saved["real"]["max"] == pytest.approx(float(np.nanmax(ds["target"].values)))
    for name in ("members", "intensity", "rapsd", "distributions"):
        png = tmp_path / "figures" / f"posterior_train_{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    # the spectra of the real fields equal the mean RAPSD of the real fields
    from downpour.metrics.spectra import mean_rapsd

    mask = ds["mask"].values
    _, p = mean_rapsd(np.where(mask, np.nan_to_num(ds["target"].values), 0.0))
    np.testing.assert_allclose(q.spectra["real"].values, p)


def test_members_figure_layout(sampled_run):
    ds = xr.open_zarr(sampled_run / "samples" / "posterior_train.zarr", consolidated=False)
    fig = plots.plot_members(ds, n_events=2, n_members=2)
    maps = [ax for ax in fig.axes if ax.get_title()]
    # 2 heaviest events × (real + 2 members), then the colour bar labelled with units
    assert len(maps) == 6
    real_mean = np.nanmean(np.where(ds["mask"].values, ds["target"].values, np.nan), axis=(1, 2))
    heaviest = np.datetime_as_string(ds["time"].values[np.argmax(real_mean)], unit="D")
    assert maps[0].get_title() == f"real {heaviest}"
    assert any("precipitation (mm/day)" in ax.get_ylabel() for ax in fig.axes)
    plots.plt.close(fig)


def test_cli_evaluate_and_compare(sampled_run, tmp_path):
    runner = CliRunner()
    samples = sampled_run / "samples" / "posterior_train.zarr"
    run_a, run_b = tmp_path / "v1", tmp_path / "v2"
    res = runner.invoke(cli, ["evaluate", str(samples), "--out", str(run_a), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "diversity" in res.output and "posterior mode" in res.output
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


def test_cli_evaluate_missing_variable(tmp_path):
    bad = tmp_path / "bad.zarr"
    xr.Dataset({"samples": (("event", "member", "y", "x"), np.zeros((1, 2, 3, 3)))}).to_zarr(bad)
    res = CliRunner().invoke(cli, ["evaluate", str(bad)])
    assert res.exit_code == 2
    assert "variable 'target' is missing" in res.output and str(bad) in res.output
