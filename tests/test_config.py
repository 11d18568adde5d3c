from pathlib import Path

import pytest

from downpour.config import PRESET_DIR, Config, load_config, save_config
from downpour.core.errors import DownpourError

PRESETS = [
    "demo",
    "cvae_v1_baseline",
    "cvae_v2_phase1",
    "cvae_v3_phase2",
    "cvae_v4_phase3",
    "srdrn",
    "nowcast",
]


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_scientific_notation_is_a_number(tmp_path):
    cfg = load_config(
        write(tmp_path, "loss:\n  beta_kl: 1e-3\ntrain:\n  lr: 5E-4\n  min_lr: 1.0e-6\n")
    )
    assert cfg.loss.beta_kl == pytest.approx(0.001)
    assert cfg.train.lr == pytest.approx(5e-4)
    assert cfg.train.min_lr == pytest.approx(1e-6)


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(
        None,
        [
            "train.epochs=3",
            "loss.beta_kl=2e-3",
            "loss.multiscale_weights=[1, 0.5, 0.25]",
            "data.embedded.n_years=2",
            "train.precision=bf16-mixed",
            "train.precision=32",
        ],
    )
    assert cfg.train.epochs == 3
    assert cfg.loss.beta_kl == pytest.approx(0.002)
    assert cfg.loss.multiscale_weights == [1.0, 0.5, 0.25]
    assert cfg.data.embedded.n_years == 2
    assert cfg.train.precision == "32"


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    p = write(tmp_path, "train:\n  epoch: 3\n")
    with pytest.raises(DownpourError) as e:
        load_config(p)
    msg = str(e.value)
    assert "'train.epoch'" in msg and str(p) in msg and "did you mean 'epochs'" in msg


def test_unknown_section(tmp_path):
    p = write(tmp_path, "trian:\n  epochs: 3\n")
    with pytest.raises(DownpourError, match=r"unknown config key 'trian'.*did you mean 'train'"):
        load_config(p)


def test_wrong_type_names_key_and_file(tmp_path):
    p = write(tmp_path, "train:\n  epochs: many\n")
    with pytest.raises(DownpourError) as e:
        load_config(p)
    assert "'train.epochs'" in str(e.value) and str(p) in str(e.value) and "'many'" in str(e.value)


def test_wrong_literal_lists_choices():
    with pytest.raises(DownpourError, match=r"model\.head.*'relu', 'softplus' or 'hurdle'"):
        load_config(None, ["model.head=sigmoid"])


def test_base_chain_and_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    write(
        tmp_path,
        "model:\n  d_z: 7\n  dropout: 0.3\ndata:\n  target: {path: x.nc, variable: pr}\n",
        "base.yaml",
    )
    child = write(tmp_path / "sub", "base: ../base.yaml\nmodel:\n  d_z: 9\n")
    cfg = load_config(child)
    assert cfg.model.d_z == 9 and cfg.model.dropout == pytest.approx(0.3)
    assert cfg.data.target.path == (tmp_path / "x.nc").resolve()


def test_split_range_replaces_base_years(tmp_path):
    write(tmp_path, "data:\n  splits:\n    train: {years: [2001]}\n", "base.yaml")
    child = write(
        tmp_path,
        "base: base.yaml\ndata:\n  splits:\n    train: {start: 2001-01-01, end: 2001-06-30}\n",
    )
    cfg = load_config(child)
    assert cfg.data.splits.train.years is None
    assert str(cfg.data.splits.train.start) == "2001-01-01"


def test_base_loop_is_an_error(tmp_path):
    write(tmp_path, "base: b.yaml\n", "a.yaml")
    write(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(DownpourError, match="loops"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_round_trip(name, tmp_path):
    cfg = load_config(name)
    assert isinstance(cfg, Config)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_presets_match_design_table():
    v1, v2, v3, v4 = (load_config(n) for n in PRESETS[1:5])
    assert (v1.model.d_z, v2.model.d_z, v3.model.d_z, v4.model.d_z) == (64, 128, 128, 128)
    assert (v1.model.base_filters, v1.model.d_y, v1.model.d_x) == (64, 256, 64)
    assert (v3.model.base_filters, v3.model.d_y, v3.model.d_x) == (96, 384, 96)
    assert (v4.model.base_filters, v4.model.d_y, v4.model.d_x) == (96, 384, 96)
    assert not (v1.model.skips or v1.model.attention or v1.model.res_blocks)
    assert v3.model.skips and v3.model.attention and v3.model.res_blocks and v4.model.skips
    assert (v1.model.dropout, v2.model.dropout, v3.model.dropout, v4.model.dropout) == (
        0.1,
        0.1,
        0.2,
        0.2,
    )
    assert (v3.model.injection, v4.model.injection) == ("every", "first")
    assert (v1.loss.scale, v1.loss.w_min, v1.loss.w_max, v1.loss.tail_boost) == (20, 0.1, 3, 2)
    assert (v4.loss.scale, v4.loss.w_min, v4.loss.w_max, v4.loss.tail_boost) == (20, 0.1, 10, 5)
    assert all(v.loss.lambda_mass == 0.005 for v in (v1, v2, v3, v4))
    assert (v1.loss.beta_kl, v1.loss.kl_schedule, v1.loss.kl_warmup_epochs) == (0.01, "linear", 20)
    assert (v2.loss.beta_kl, v3.loss.beta_kl) == (0.005, 0.005)
    assert (
        v4.loss.kl_schedule,
        v4.loss.kl_cycle_period,
        v4.loss.kl_cycle_drop,
        v4.loss.free_bits,
    ) == ("cyclical", 30, 10, 0.5)
    assert (v1.loss.lambda_sparse, v2.loss.lambda_sparse, v4.loss.target_wet) == (0.0, 0.01, 0.75)
    assert (v2.loss.lambda_multiscale, v3.loss.lambda_multiscale) == (0.0, 0.1)
    assert v3.loss.multiscale_weights == [1.0, 0.3, 0.1]
    assert (v3.loss.lambda_grad, v4.loss.lambda_grad, v4.loss.focal_gamma, v4.loss.focal_boost) == (
        0.0,
        0.05,
        2.0,
        10.0,
    )
    assert v4.loss.lambda_focal > 0 and v3.loss.lambda_focal == 0
    assert (
        v1.train.epochs,
        v1.train.patience,
        v2.train.epochs,
        v2.train.patience,
        v2.train.min_delta,
    ) == (150, 40, 250, 60, 0.01)
    assert (v4.train.epochs, v4.train.patience, v4.train.min_delta) == (300, 100, 0.001)
    assert (
        v1.train.scheduler,
        v2.train.scheduler,
        v2.train.plateau_factor,
        v2.train.plateau_patience,
    ) == ("cosine", "plateau", 0.5, 15)
    assert v2.train.min_lr == pytest.approx(1e-6)
    assert (v1.train.min_heavy_fraction, v2.train.min_heavy_fraction) == (0.2, 0.4)
    assert (v3.train.flips, v3.train.noise, v3.train.accumulate) == (False, 0.0, 1)
    assert (v4.train.flips, v4.train.noise, v4.train.accumulate) == (True, 0.02, 2)
    for v in (v1, v2, v3, v4):
        s = v.sampling
        assert (s.mode, s.members, s.temperature, s.pixel_threshold) == ("posterior", 5, 1.0, 0.1)


def test_srdrn_preset_is_the_published_network():
    s = load_config("srdrn").srdrn
    assert (s.filters, s.res_blocks, s.upsample) == (64, 16, [2, 3, 2])
    assert (s.loss_scale, s.w_min, s.w_max, s.lr, s.batch_size) == (36.6, 0.1, 2.0, 1e-5, 64)


def test_demo_switches_every_mechanism_on():
    d = load_config("demo")
    m, lo, t = d.model, d.loss, d.train
    assert (
        m.skips and m.attention and m.res_blocks and m.head == "hurdle" and m.prior == "conditional"
    )
    assert lo.free_bits > 0 and lo.lambda_sparse > 0 and lo.lambda_multiscale > 0
    assert lo.lambda_grad > 0 and lo.lambda_focal > 0 and lo.kl_schedule == "cyclical"
    assert t.flips and t.noise > 0 and t.min_heavy_fraction > 0


def test_all_preset_files_are_tested():
    assert {p.stem for p in PRESET_DIR.glob("*.yaml")} == set(PRESETS)
