"""Loading a config: YAML numbers, --set overrides, errors naming key and file, base chains."""

from pathlib import Path

import pytest

from downpour.config import load_config
from downpour.core.errors import DownpourError


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
