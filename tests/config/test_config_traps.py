"""Config traps closed: a retired key, a silently replaced scale factor, a preset as base."""

import pytest

from downpour.config import load_config
from downpour.core.errors import DownpourError


def test_retired_srdrn_baseline_says_where_baselines_are_chosen():
    with pytest.raises(DownpourError, match=r"srdrn.baseline was never used .*--baseline bicubic"):
        load_config("demo", ["srdrn.baseline=bcsd"])
    assert "baseline" not in load_config("srdrn").srdrn.model_dump()


def test_embedded_scale_factor_is_not_silently_replaced():
    with pytest.raises(DownpourError, match=r"data.scale_factor=6 differs from .*=12"):
        load_config("demo", ["data.scale_factor=6"])
    cfg = load_config("demo", ["data.scale_factor=6", "data.embedded.scale_factor=6"])
    assert cfg.data.scale_factor == cfg.data.embedded.scale_factor == 6
    # with a target file the embedded section is unused: no conflict
    cfg = load_config("demo", ["data.scale_factor=5", "data.target={path: x.nc, variable: tp}"])
    assert cfg.data.scale_factor == 5


def test_a_config_file_anywhere_can_start_from_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: demo\nname: mine\ntrain:\n  epochs: 2\n")
    cfg = load_config(path)
    assert (cfg.name, cfg.train.epochs) == ("mine", 2)
    assert cfg.model == load_config("demo").model
    path.write_text("base: no_such_preset\n")
    with pytest.raises(DownpourError, match=r"no_such_preset.* not found; presets: .*demo"):
        load_config(path)
