"""The `nowcast` commands: train (the shared tiny run), forecast, verify."""

import json

import pytest
import xarray as xr
from click.testing import CliRunner

from downpour.cli.nowcast import nowcast

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(args):
    result = CliRunner().invoke(nowcast, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def test_cli_forecast_writes_a_store(trained_nowcast, tmp_path):
    out = tmp_path / "fc.nc"
    res = invoke(["forecast", "--checkpoint", trained_nowcast, "--init", "2021-07-01T19:00",
                  "--hours", 2, "--out", out])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 leads of 60 min" in res.output and out.is_file()
    ds = xr.open_dataset(out)
    assert ds["precip_rate"].dims == ("lead_time", "y", "x")
    ds.close()


def test_cli_forecast_bad_init_is_one_error_line(trained_nowcast):
    res = invoke(["forecast", "--checkpoint", trained_nowcast, "--init", "2021-07-01T01:00"])
    assert res.exit_code == 2
    assert "error:" in res.output and "has only 2 frame(s) up to it" in res.output
    assert "valid init times: 2021-07-01T02:00 .. 2021-07-01T23:00" in res.output


def test_cli_verify_prints_the_table(trained_nowcast, tmp_path):
    res = invoke(["verify", "--checkpoint", trained_nowcast, "--hours", 2, "--no-extrapolation",
                  "--out", tmp_path])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "nowcast scores vs lead" in res.output
    assert "1:00" in res.output and "2:00" in res.output  # one row per lead
    saved = json.loads((tmp_path / "metrics" / "verify_nowcast.json").read_text())
    pers = saved["methods"]["persistence"][0]["csi"]["1mm/h"]
    assert f"/{pers:.2f}".replace("/0.", "/.") in res.output  # persistence CSI in the table
    assert (tmp_path / "metrics" / "verify_nowcast.json").is_file()


def test_group_is_registered_on_the_main_cli():
    from downpour.cli.main import cli

    res = CliRunner().invoke(cli, ["nowcast", "--help"])
    assert res.exit_code == 0 and "train" in res.output and "verify" in res.output


def test_cli_forecast_writes_into_the_run_by_default(trained_nowcast):
    res = invoke(["forecast", "--checkpoint", trained_nowcast, "--init", "2021-07-01T19:00",
                  "--hours", 1, "--format", "netcdf"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = trained_nowcast.parents[2] / "forecasts" / "nowcast_2021-07-01T1900.nc"
    try:
        assert out.is_file() and f"wrote {out}" in res.output.replace("\n", "")
    finally:
        out.unlink(missing_ok=True)
