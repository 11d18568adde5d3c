"""downpour verify with a cVAE: its prior-mode ensemble scored as a probabilistic downscaler.

The expected numbers are computed here from the same members, drawn again
through :func:`downpour.downscaling.downscalers.cvae_downscaler` (the code
path of ``downpour downscale``), with brute-force numpy formulas.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from _shared import QUARTER_JAN, TINY_CVAE, TINY_SRDRN, copy_run
from downpour.cli.verify import verify as verify_cmd
from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.downscaling.downscalers import cvae_downscaler
from downpour.downscaling.model_facts import Facts
from downpour.downscaling.predict import predict_srdrn
from downpour.downscaling.store import labels, open_store
from downpour.downscaling.train import train_cvae, train_srdrn
from downpour.downscaling.verify import merge_states, verify_run
from downpour.downscaling.verify_generator import GENERATOR_RULE, find_generator_checkpoint
from downpour.downscaling.verify_probabilistic import training_climatology
from downpour.models.loading import load_model
from downpour.report.ensemble_figures import FIGURES
from downpour.report.html import write_report

pytestmark = pytest.mark.usefixtures("one_thread")

K = 4
N_BOOT = 40


def quiet(*args):
    return None


@pytest.fixture(scope="module")
def generator_run(quarter_jan_run, tmp_path_factory):
    """quarter_jan with a tiny cVAE (two steps) and a tiny real-only SRDRN."""
    run = copy_run(quarter_jan_run, tmp_path_factory.mktemp("generator_run") / "run")
    cvae = [*QUARTER_JAN, *TINY_CVAE, "train.batch_size=16", "train.epochs=1",
            "train.max_batches_per_epoch=2"]  # fmt: skip
    train_cvae(load_config("demo", cvae), run, echo=quiet, enable_progress_bar=False)
    train_srdrn(load_config("demo", [*QUARTER_JAN, *TINY_SRDRN]), run, kind="srdrn_real",
                echo=quiet, enable_progress_bar=False)  # fmt: skip
    return run


@pytest.fixture(scope="module")
def one_pass(generator_run, tmp_path_factory):
    """One verification of all 31 test days (K members), its saved JSON and its report."""
    res = verify_run(generator_run, members=K, n_boot=N_BOOT, echo=quiet)
    saved = json.loads((generator_run / "metrics" / "verify.json").read_text())
    html = write_report(generator_run, tmp_path_factory.mktemp("report") / "r.html").read_text()
    figures = {n: (generator_run / "figures" / f"{n}.png").read_bytes()[:4] for n in FIGURES}
    return res, saved, html, figures


def members_of_test_days(run: Path):
    """Test days: truth (days, H, W), mask, times and the members of cvae_downscaler."""
    store = run / "data" / "store.zarr"
    ds = open_store(store)
    rows = np.flatnonzero(labels(ds["split"].values) == "test")
    truth = ds["target"].values[rows].astype(np.float64)
    mask = ds["mask"].values.astype(bool)
    x, days = ds["predictors"].values[rows], ds["time"].values[rows]
    ckpt = find_generator_checkpoint(run)
    loaded = load_model(ckpt, "cvae")
    cfg = loaded.config.model_copy(
        update={"sampling": loaded.config.sampling.model_copy(update={"members": K})}
    )
    model = cvae_downscaler(loaded, Facts.from_info(loaded.info, str(ckpt)), cfg,
                            torch.device("cpu"))  # fmt: skip
    members = model.predict(x, days)
    return truth, mask, days, members


def brute_crps(members: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """ECDF and fair CRPS from the definition, averaged over valid cells."""
    m = members.astype(np.float64)
    k = m.shape[1]
    skill = np.abs(m - truth[:, None]).mean(axis=1)
    pairs = np.abs(m[:, :, None] - m[:, None, :]).sum(axis=(1, 2))
    ecdf = skill - pairs / (2 * k * k)
    fair = skill - pairs / (2 * k * (k - 1))
    return float(ecdf[valid].mean()), float(fair[valid].mean())


def test_generator_block_equals_brute_force_scores(generator_run, one_pass):
    res, saved, html, figures = one_pass
    truth, mask, days, members = members_of_test_days(generator_run)
    assert members.shape == (31, K, *mask.shape)
    valid = mask[None] & np.isfinite(truth)
    gen = res["generator"]
    ens = gen["ensemble"]
    assert gen["members"] == ens["members"] == K  # from the argument, not sampling.members
    assert ens["n_days"] == 31 and ens["n_valid"] == int(valid.sum())
    crps, fair = brute_crps(members, truth, valid)
    assert ens["crps_ecdf"] == pytest.approx(crps, rel=1e-6)
    assert ens["crps_fair"] == pytest.approx(fair, rel=1e-6)
    assert 0 < fair < crps and ens["spread"] > 0  # the members differ
    m64 = members.astype(np.float64)
    err = m64.mean(axis=1) - truth
    rmse = float(np.sqrt((err**2)[valid].mean()))
    spread = float(np.sqrt(m64.var(axis=1, ddof=1)[valid].mean() * (K + 1) / K))
    assert ens["mae_ensemble_mean"] == pytest.approx(float(np.abs(err)[valid].mean()), rel=1e-6)
    assert ens["rmse_ensemble_mean"] == pytest.approx(rmse, rel=1e-6)
    assert ens["spread_skill"] == pytest.approx(spread / rmse, rel=1e-6)
    assert len(ens["rank_histogram"]["counts"]) == K + 1
    assert sum(ens["rank_histogram"]["counts"]) == int(valid.sum())
    # event probabilities: the fraction of members above, against the training climatology
    store = generator_run / "data" / "store.zarr"
    clim = training_climatology(store, gen["events"], mask)
    assert gen["climatology"] == clim
    for event, thr in gen["events"].items():
        t32 = np.float32(thr)
        p = (members > t32).mean(axis=1)
        o = truth > t32
        brier = float(((p - o) ** 2)[valid].mean())
        assert ens["events"][event]["brier"] == pytest.approx(brier, rel=1e-6, abs=1e-12)
        ref = float(((clim[event] - o) ** 2)[valid].mean())
        assert ens["events"][event]["bss"] == pytest.approx(1 - brier / ref, rel=1e-6)
        # every member pooled as a deterministic forecast
        f, ob = members > t32, np.broadcast_to(o[:, None], members.shape)
        v = np.broadcast_to(valid[:, None], members.shape)
        a, b, c = ((f & ob)[v].sum(), (f & ~ob)[v].sum(), (~f & ob)[v].sum())
        cat = gen["member_scores"]["categorical"][event]
        assert (cat["a"], cat["b"], cat["c"]) == (a, b, c)
        assert cat["csi"] == pytest.approx(a / (a + b + c) if a + b + c else np.nan, nan_ok=True)
    member_mae = float(np.abs(m64 - truth[:, None])[np.broadcast_to(valid[:, None], m64.shape)]
                       .mean())  # fmt: skip
    assert gen["member_scores"]["continuous"]["mae"] == pytest.approx(member_mae, rel=1e-6)
    assert "gpd" not in gen["member_scores"]
    # CRPS − MAE of the SRDRN, computed independently
    srdrn = predict_srdrn(generator_run / "checkpoints" / "srdrn_real" / "last.ckpt", store,
                          split="test").values.astype(np.float64)  # fmt: skip
    mae = float(np.abs(srdrn - truth)[valid].mean())
    d = gen["crps_minus_mae"]["srdrn_real"]["ecdf"]
    assert d["reference"]["estimate"] == pytest.approx(mae, rel=1e-6)
    assert d["difference"]["estimate"] == pytest.approx(crps - mae, rel=1e-5, abs=1e-9)
    assert d["difference"]["low"] <= d["difference"]["estimate"] <= d["difference"]["high"]
    fair_d = gen["crps_minus_mae"]["srdrn_real"]["fair"]["difference"]["estimate"]
    assert fair_d == pytest.approx(fair - mae, rel=1e-5, abs=1e-9)
    assert set(gen["crps_minus_mae"]) == {"srdrn_real", "bicubic", "bcsd"}
    # the headline, the facts, the saved file, the figures and the report
    assert res["headline"]["CRPS generator"][0] == pytest.approx(crps, rel=1e-6)
    assert res["headline"]["CRPS generator − MAE srdrn_real"][0] == d["difference"]["estimate"]
    ckpt = find_generator_checkpoint(generator_run)
    assert res["checkpoints"]["generator"] == gen["checkpoint"] == str(ckpt)
    assert gen["checkpoint_rule"] == GENERATOR_RULE and gen["mode"] == "prior"
    assert len(gen["checkpoint_sha256"]) == 64
    assert any(line.startswith("generator CRPS − srdrn_real MAE: ") for line in
               res["significance"])  # fmt: skip
    assert saved["generator"]["ensemble"]["crps_ecdf"] == ens["crps_ecdf"]
    assert all(magic == b"\x89PNG" for magic in figures.values())
    assert "Generator as a probabilistic downscaler" in html
    assert "every member pooled" in html and "CRPS − MAE (ECDF)" in html


def test_pieces_merged_equal_one_pass(generator_run, one_pass, tmp_path):
    whole = one_pass[0]
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d, period in zip(dirs, ("2002-01-01:2002-01-15", "2002-01-16:2002-01-31"), strict=True):
        verify_run(generator_run, members=K, period=period, save_state=d, echo=quiet)
    manifest = json.loads((dirs[0] / "manifest.json").read_text())
    assert manifest["generator_models"] == {"ensemble": "generator.ensemble.npz",
                                            "members": "generator.members.npz"}  # fmt: skip
    assert len(manifest["checkpoint_sha256"]["generator"]) == 64
    assert manifest["generator"]["members"] == K
    merged = merge_states(dirs[::-1], tmp_path / "verify.json", n_boot=N_BOOT, echo=quiet)
    assert json.dumps(merged["generator"], sort_keys=True) == json.dumps(
        whole["generator"], sort_keys=True
    )
    assert merged["headline"]["CRPS generator"] == whole["headline"]["CRPS generator"]
    # a piece drawn with another ensemble size does not merge
    other = tmp_path / "c"
    verify_run(generator_run, members=K - 1, period="2002-01-16:2002-01-31", save_state=other,
               baselines=("bicubic", "bcsd"), echo=quiet)  # fmt: skip
    with pytest.raises(DownpourError, match="the generator's members 3 differs from 4"):
        merge_states([dirs[0], other], tmp_path / "bad.json", echo=quiet)
    assert not (tmp_path / "bad.json").exists()


def test_no_generator_skips_it(generator_run, monkeypatch, tmp_path):
    import downpour.downscaling.downscale as downscale_module

    with pytest.raises(DownpourError, match="at least 2 members"):
        verify_run(generator_run, members=1, echo=quiet)

    def refuse(*args, **kwargs):
        raise AssertionError("the generator was loaded")

    monkeypatch.setattr(downscale_module, "_load", refuse)  # how verify loads the cVAE
    run = copy_run(generator_run, tmp_path / "run")
    res = CliRunner().invoke(verify_cmd, [str(run), "--no-generator", "--no-figures",
                                          "--n-boot", "10", "--baseline", "bicubic"])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "metrics" / "verify.json").read_text())
    assert "generator" not in saved and "generator" not in saved["checkpoints"]
    assert not any(k.startswith("CRPS") for k in saved["headline"])
    assert "prior-mode" not in res.output  # no generator table
    bad = CliRunner().invoke(verify_cmd, [str(run), "--members", "1"])
    assert bad.exit_code == 2 and "--members" in bad.output


def test_a_run_without_cvae_has_no_block(generator_run, quarter_jan_run, tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "store.zarr").symlink_to(quarter_jan_run / "data" / "store.zarr")
    period = "2002-01-01:2002-01-06"
    res = verify_run(run, baselines=("bicubic",), period=period, n_boot=10, figures=False,
                     echo=quiet)  # fmt: skip
    assert "generator" not in res and set(res["checkpoints"]) == set()
    assert not any(line.startswith("generator") for line in res["significance"])
    assert "Generator as a probabilistic downscaler" not in write_report(run).read_text()
    # a cVAE checkpoint named explicitly is scored, and its rule says so
    ckpt = find_generator_checkpoint(generator_run)
    res = verify_run(run, baselines=("bicubic",), period=period, generator=ckpt, members=2,
                     n_boot=10, figures=False, echo=quiet)  # fmt: skip
    gen = res["generator"]
    assert gen["checkpoint_rule"] == "as given" and gen["members"] == 2
    assert gen["ensemble"]["n_days"] == 6 and set(gen["crps_minus_mae"]) == {"bicubic"}
