"""Nowcast forecast, baselines, range checks, verification and the `nowcast` commands."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from click.testing import CliRunner

from downpour.cli.nowcast import nowcast
from downpour.core.errors import DownpourError
from downpour.nowcast.verify import LeadScores, beats_persistence, verify_nowcast
from downpour.nowcast.forecast import (
    RolloutRangeWarning,
    forecast,
    init_index,
    persistence_forecast,
    run_forecast,
    valid_inits,
    write_forecast,
)

TINY = [
    "nowcast.embedded_hours=24",
    "nowcast.embedded_size=24",
    "nowcast.embedded_step_minutes=60",
    "nowcast.n_frames=3",
    "nowcast.base_features=4",
    "nowcast.depth=2",
    "nowcast.batch_size=2",
    "nowcast.accumulate=1",
    "nowcast.epochs=1",
    "nowcast.hours=3",
    "nowcast.verify_every=1",
    "nowcast.fss_scales=[1,3]",
    "nowcast.rollout_steps=1",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run several times faster on one thread on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def invoke(args):
    result = CliRunner().invoke(nowcast, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread) -> Path:
    """A tiny run trained through `nowcast train` (shared, read-only)."""
    run = tmp_path_factory.mktemp("nowcast_run")
    args = ["train", "--out", run]
    for item in TINY:
        args += ["--set", item]
    res = invoke(args)
    assert res.exit_code == 0, res.output
    assert "parameters" in res.output and "validation MAE" in res.output
    return run / "checkpoints" / "nowcast" / "last.ckpt"


class Stub(torch.nn.Module):
    """Next frame = f(last frame); no parameters besides a dummy one."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, frames, enc):
        return self.fn(frames[:, -1:])


def radar(n=8, h=3, w=4, start="2021-07-01T00:00", gap_at=None):
    times = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(1, "h")
    vals = (np.arange(n, dtype=np.float32)[:, None, None] + 1.0) * np.ones((1, h, w), np.float32)
    vals[:, 0, 0] = np.nan  # outside the radar
    da = xr.DataArray(
        vals,
        dims=("time", "y", "x"),
        coords={"time": times, "y": 1000.0 * np.arange(h), "x": 2000.0 * np.arange(w)},
        attrs={"step_minutes": 60, "units": "mm/h"},
    )
    if gap_at is not None:
        da = da.isel(time=[i for i in range(n) if i != gap_at])
    return da


STATS = {"max": 10.0, "mean": 2.0, "mean_max": 5.0, "wet_fraction": 0.5, "frames": 8}


# ------------------------------------------------------------------ rollout


def test_rollout_feeds_predictions_back_and_writes_coordinates():
    da = radar()
    ds = run_forecast(Stub(lambda x: x + 1.0), da, init="2021-07-01T03:00", steps=3,
                      n_frames=2, transform="none")  # fmt: skip
    last = 4.0  # frame 3 holds 3 + 1
    np.testing.assert_allclose(ds["precip_rate"].values[:, 1, 1], [last + 1, last + 2, last + 3])
    assert np.isnan(ds["precip_rate"].values[:, 0, 0]).all()  # outside the radar domain
    assert ds["precip_rate"].dims == ("lead_time", "y", "x")
    assert ds["precip_rate"].attrs["units"] == "mm/h"
    assert ds["lead_time"].values.astype("timedelta64[h]").astype(int).tolist() == [1, 2, 3]
    assert str(ds["time"].values[0])[:16] == "2021-07-01T04:00"
    assert ds["x"].values.tolist() == [0.0, 2000.0, 4000.0, 6000.0]
    assert ds["domain_max"].values.tolist() == [5.0, 6.0, 7.0]


def test_rollout_in_log_space_keeps_rain_non_negative():
    ds = run_forecast(Stub(lambda x: x - 100.0), radar(), init="2021-07-01T03:00", steps=2,
                      n_frames=2, transform="log")  # fmt: skip
    assert np.nanmin(ds["precip_rate"].values) == 0.0


def test_init_checks_list_the_valid_range():
    da = radar(n=10, gap_at=5)  # 05:00 missing
    ok = valid_inits(da, 3)
    assert [str(t)[11:16] for t in ok] == ["02:00", "03:00", "04:00", "08:00", "09:00"]
    assert init_index(da, "2021-07-01T08:00", 3) == 7
    with pytest.raises(DownpourError, match=r"07:00 does not have 3 complete, consecutive frames"):
        init_index(da, "2021-07-01T07:00", 3)  # window spans the gap
    with pytest.raises(
        DownpourError,
        match=r"01:00 has only 2 frame.* valid init times: "
        r"2021-07-01T02:00 \.\. 2021-07-01T04:00, 2021-07-01T08:00 \.\. ",
    ):
        init_index(da, "2021-07-01T01:00", 3)
    with pytest.raises(DownpourError, match=r"is not a frame of the source"):
        init_index(da, "2021-07-02T00:00", 3)
    with pytest.raises(DownpourError, match=r"not a date-time"):
        init_index(da, "yesterday", 3)


def test_range_warning_fires_for_an_exploding_model():
    with pytest.warns(RolloutRangeWarning, match=r"exploding rain\) at lead \+2:00 h") as rec:
        ds = run_forecast(Stub(lambda x: x * 3.0), radar(), init="2021-07-01T02:00", steps=4,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    # frame 2 = 3 mm/h: leads 9, 27, 81, 243; limit 2 × 10 = 20 from lead 2
    assert "domain max 27.0 mm/h (limit 2 × training max 10.0 = 20.0)" in str(rec[0].message)
    assert "3 of 4 leads" in str(rec[0].message)
    assert json.loads(ds.attrs["range_warnings"])[0] == str(rec[0].message)


def test_range_warning_fires_for_a_vanishing_model():
    with pytest.warns(RolloutRangeWarning, match=r"fades to no rain \(vanishing\) at lead \+1:00"):
        ds = run_forecast(Stub(lambda x: x * 0.0), radar(), init="2021-07-01T02:00", steps=2,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    assert float(ds["domain_max"].max()) == 0.0


def test_range_warning_fires_when_rain_smears_into_drizzle():
    # 10 mm/h everywhere, × 0.02: 0.2 mm/h keeps every cell wet (> 0.1 mm/h), but the
    # max falls to 2% of the init frame's
    da = radar() * 0 + 10.0
    da[:, 0, 0] = np.nan
    with pytest.warns(RolloutRangeWarning, match=r"vanishing\) at lead \+1:00 h.*domain max "
                      r"0\.20 mm/h \(init 10\.00"):  # fmt: skip
        ds = run_forecast(Stub(lambda x: x * 0.02), da, init="2021-07-01T02:00", steps=2,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    assert float(ds["domain_max"].values[0]) == pytest.approx(0.2)


def test_probability_matching_keeps_the_rollout_bounded():
    da = radar()
    da[3, 1, :] = [np.nan, 1.0, 2.0, 3.0]  # init frame: 02:00 .. 03:00 window ends here
    with warnings.catch_warnings():
        warnings.simplefilter("error", RolloutRangeWarning)
        ds = run_forecast(Stub(lambda x: x * 3.0 + torch.arange(x.shape[-1]) * 0.01), da,
                          init="2021-07-01T03:00", steps=5, n_frames=2, transform="none",
                          stats=STATS, prob_match=True)  # fmt: skip
    init = da.values[3]
    domain = np.isfinite(init)
    for k in range(5):  # every lead has exactly the init frame's values over the domain
        lead = ds["precip_rate"].values[k]
        np.testing.assert_allclose(np.sort(lead[domain]), np.sort(init[domain]))
        assert np.isnan(lead[~domain]).all()
    assert ds.attrs["prob_match"] == 1


def test_a_model_in_range_raises_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RolloutRangeWarning)
        ds = run_forecast(Stub(lambda x: x), radar(), init="2021-07-01T02:00", steps=2,
                          n_frames=2, transform="none", stats=STATS)  # fmt: skip
    assert json.loads(ds.attrs["range_warnings"]) == []


# ------------------------------------------------------------------ scores


def test_persistence_scores_equal_hand_computed_ones():
    times = np.datetime64("2021-07-01T00:00", "ns") + np.arange(2) * np.timedelta64(1, "h")
    obs = np.array([[[0.0, 2.0], [6.0, 0.0]], [[0.0, 0.0], [12.0, 3.0]]], dtype=np.float32)
    da = xr.DataArray(obs, dims=("time", "y", "x"), coords={"time": times},
                      attrs={"step_minutes": 60})  # fmt: skip
    fc = persistence_forecast(da, init=times[0], steps=1)
    np.testing.assert_array_equal(fc["precip_rate"].values[0], obs[0])
    scores = LeadScores(1, [1.0, 5.0, 10.0], [1], "log")
    scores.update(fc["precip_rate"].values, obs[1:], times[0])
    s = scores.compute()[0]
    # > 1: persistence (0,1),(1,0); truth (1,0),(1,1) -> a 1, b 1, c 1
    assert s["csi"] == {"1mm/h": pytest.approx(1 / 3), "5mm/h": 1.0, "10mm/h": 0.0}
    assert s["rmse"] == pytest.approx(3.5)  # errors 0, 2, -6, -3
    assert s["mae"] == pytest.approx(2.75)
    d = np.log1p(obs[0]) - np.log1p(obs[1])
    assert s["rmse_norm"] == pytest.approx(float(np.sqrt(np.mean(d**2))), rel=1e-6)
    assert s["fss"]["1mm/h"][1] == pytest.approx(1 - 2 / 4)  # (ΣΔ²=2)/(ΣPf²+ΣPo²=2+2)
    assert s["n_inits"] == 1 and len(s["rapsd"]) == 1


def test_beats_persistence_flags():
    m = {"n_inits": 3, "csi": {"1mm/h": 0.5, "10mm/h": 0.1}, "fss": {"1mm/h": {1: 0.6, 5: 0.8}}}
    p = {"n_inits": 3, "csi": {"1mm/h": 0.4, "10mm/h": 0.1}, "fss": {"1mm/h": {1: 0.5, 5: 0.9}}}
    assert beats_persistence(m, p, "10mm/h") == {
        "csi_1": True, "fss_1": False, "csi_heavy_not_worse": True,
    }  # fmt: skip


# ------------------------------------------------------------------ checkpoint API


def test_forecast_from_checkpoint_and_store_round_trip(trained, tmp_path):
    ds = forecast(trained, init="2021-07-01T20:00", hours=2)
    assert ds.sizes == {"lead_time": 2, "y": 24, "x": 24}
    assert ds.attrs["checkpoint"] == str(trained)
    to_end = forecast(trained, init="2021-07-01T20:00", hours=None)
    assert to_end.sizes["lead_time"] == 3  # 21:00 .. 23:00, the last frame
    for name in ("f.zarr", "f.nc"):
        path = write_forecast(ds, tmp_path / name)
        zarr = name.endswith("zarr")
        back = xr.open_dataset(path, **({"engine": "zarr", "consolidated": False} if zarr else {}))
        np.testing.assert_allclose(back["precip_rate"].values, ds["precip_rate"].values)
        assert back["precip_rate"].attrs["units"] == "mm/h"
        assert back["lead_time"].dtype.kind == "m" and back["time"].dtype.kind == "M"
        back.close()
    with pytest.raises(DownpourError, match=r"whole number of 60-min steps"):
        forecast(trained, init="2021-07-01T20:00", hours=1.5)


def test_verify_scores_model_against_persistence(trained, tmp_path):
    res = verify_nowcast(
        trained, hours=3, extrapolation=False, out_dir=tmp_path, echo=lambda m: None
    )
    assert res["period"] == "test" and res["leads"] == [60, 120, 180]
    assert all(t >= "2021-07-01T18:00" for t in res["inits"])  # truth in the held-out block
    lead1 = res["methods"]["persistence"][0]
    assert lead1["n_inits"] == len(res["inits"]) and 0 <= lead1["csi"]["1mm/h"] <= 1
    assert set(res["beats_persistence"][0]) == {"csi_1", "fss_1", "csi_heavy_not_worse"}
    saved = json.loads((tmp_path / "metrics" / "verify_nowcast.json").read_text())
    assert saved["leads"] == [60, 120, 180]
    assert (tmp_path / "figures" / "nowcast_scores.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "nowcast_maps.png").stat().st_size > 1000


# ------------------------------------------------------------------ commands


def test_cli_forecast_writes_a_store(trained, tmp_path):
    out = tmp_path / "fc.nc"
    res = invoke(["forecast", "--checkpoint", trained, "--init", "2021-07-01T19:00",
                  "--hours", 2, "--out", out])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 leads of 60 min" in res.output and out.is_file()
    ds = xr.open_dataset(out)
    assert ds["precip_rate"].dims == ("lead_time", "y", "x")
    ds.close()


def test_cli_forecast_bad_init_is_one_error_line(trained):
    res = invoke(["forecast", "--checkpoint", trained, "--init", "2021-07-01T01:00"])
    assert res.exit_code == 2
    assert "error:" in res.output and "has only 2 frame(s) up to it" in res.output
    assert "valid init times: 2021-07-01T02:00 .. 2021-07-01T23:00" in res.output


def test_cli_verify_prints_the_table(trained, tmp_path):
    res = invoke(["verify", "--checkpoint", trained, "--hours", 2, "--no-extrapolation",
                  "--out", tmp_path])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "nowcast scores vs lead" in res.output
    assert "1:00" in res.output and "2:00" in res.output  # one row per lead
    saved = json.loads((tmp_path / "metrics" / "verify_nowcast.json").read_text())
    pers = saved["methods"]["persistence"][0]["csi"]["1mm/h"]
    assert f"/{pers:.2f}".replace("/0.", "/.") in res.output  # persistence CSI in the table
    assert (tmp_path / "metrics" / "verify_nowcast.json").is_file()


def test_cli_verify_with_pysteps_extrapolation(trained, tmp_path):
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    res = verify_nowcast(trained, hours=1, echo=lambda m: None)
    assert "extrapolation" in res["methods"], res["notes"]
    assert res["methods"]["extrapolation"][0]["n_inits"] == len(res["inits"])


def test_probability_matching_by_smoothed_ranks_removes_pixel_noise():
    from downpour.nowcast.forecast import probability_match

    i, j = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    field = 0.3 * ((i + j) % 2 == 0).float()  # pixel-scale noise
    field[2:7, 2:7] += 0.2  # a weak 5×5 rain area
    reference = torch.zeros(9, 9)
    reference[:3, :3] = 5.0  # 9 rainy cells
    valid = torch.ones(9, 9, dtype=torch.bool)
    exact = probability_match(field, reference, valid)
    smooth = probability_match(field, reference, valid, smooth=3)
    assert sorted(smooth.flatten().tolist()) == sorted(reference.flatten().tolist())
    # smoothed ranks: the 9 rainy cells fill the core of the rain area
    assert torch.equal(smooth[3:6, 3:6], torch.full((3, 3), 5.0))
    # exact ranks follow the noise: no two rainy cells side by side
    wet = exact > 0
    assert not (wet[:, 1:] & wet[:, :-1]).any() and int(wet.sum()) == 9
    assert torch.equal(probability_match(field, reference, valid, smooth=1), exact)


def test_group_is_registered_on_the_main_cli():
    from downpour.cli.main import cli

    res = CliRunner().invoke(cli, ["nowcast", "--help"])
    assert res.exit_code == 0 and "train" in res.output and "verify" in res.output
