"""Reading a checkpoint never runs code from it; load_model rebuilds any kind via the registry."""

from __future__ import annotations

import os

import pytest
import torch

from downpour.config import Config, SRDRNConfig
from downpour.core.checkpoint import payload, read_checkpoint
from downpour.core.errors import DownpourError
from downpour.models import SRDRN, build_model, load_model


class _Payload:
    """Unpickling this object would create ``marker``: the code a crafted checkpoint carries."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _srdrn_checkpoint(path, cfg: Config, info: dict, **extra) -> SRDRN:
    torch.manual_seed(0)
    net = build_model("srdrn", cfg, info)
    ckpt = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "downpour": payload("srdrn", cfg.model_dump(mode="json"), info, variant="srdrn_real"),
        **extra,
    }
    torch.save(ckpt, path)
    return net


CFG = Config(srdrn=SRDRNConfig(filters=4, res_blocks=1, upsample_filters=4))
INFO = {"x_channels": 2, "scale_factor": 6, "shape": [12, 12]}


def test_a_pickled_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "crafted.ckpt"
    _srdrn_checkpoint(path, CFG, INFO, evil=_Payload(str(marker)))
    with pytest.raises(DownpourError, match=r"crafted\.ckpt cannot be read safely") as err:
        read_checkpoint(path, "srdrn")
    assert "\n" not in str(err.value)
    assert not marker.exists()  # the payload's code did not run
    with pytest.raises(DownpourError, match="cannot be read safely"):
        load_model(path)
    assert not marker.exists()


def test_load_model_rebuilds_the_network_bit_for_bit(tmp_path):
    path = tmp_path / "last.ckpt"
    net = _srdrn_checkpoint(path, CFG, INFO).eval()
    model = load_model(path)
    assert (model.kind, model.variant, model.info) == ("srdrn", "srdrn_real", INFO)
    assert isinstance(model.net, SRDRN) and not model.net.training
    x = torch.randn(3, 2, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), net(x), rtol=0, atol=0)


def test_wrong_kind_missing_and_foreign_files_name_the_problem(tmp_path):
    path = tmp_path / "srdrn.ckpt"
    _srdrn_checkpoint(path, CFG, INFO)
    with pytest.raises(DownpourError, match=r"not a downpour cVAE checkpoint \(it is a SRDRN"):
        load_model(path, "cvae")
    with pytest.raises(DownpourError, match="not found"):
        read_checkpoint(tmp_path / "none.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(DownpourError, match="it is no downpour checkpoint"):
        read_checkpoint(foreign)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DownpourError, match="cannot be read safely"):
        read_checkpoint(garbage)


def test_weights_that_do_not_fit_the_config_are_one_clear_error(tmp_path):
    path = tmp_path / "last.ckpt"
    _srdrn_checkpoint(path, CFG, INFO)
    ck = torch.load(path, weights_only=True)
    ck["downpour"]["config"]["srdrn"]["filters"] = 8  # the config no longer describes the weights
    torch.save(ck, path)
    with pytest.raises(DownpourError, match="weights do not fit the srdrn network"):
        load_model(path)


def test_convert_checkpoint_makes_a_trusted_file_safe(tmp_path):
    import numpy as np

    from downpour.core.checkpoint import convert_checkpoint

    src, dst = tmp_path / "old.ckpt", tmp_path / "new.ckpt"
    net = _srdrn_checkpoint(src, CFG, INFO)
    ck = torch.load(src, weights_only=True)
    ck["callbacks"] = {"best": np.float64(1.5), "scores": np.arange(3.0), "dir": tmp_path}
    torch.save(ck, src)
    with pytest.raises(DownpourError, match="cannot be read safely"):
        read_checkpoint(src)  # numpy objects are not plain data
    with pytest.raises(DownpourError, match="trust the file"):
        convert_checkpoint(src, dst)
    convert_checkpoint(src, dst, trust=True)
    safe = torch.load(dst, weights_only=True)
    assert safe["callbacks"]["best"] == 1.5 and safe["callbacks"]["dir"] == str(tmp_path)
    torch.testing.assert_close(safe["callbacks"]["scores"], torch.arange(3.0, dtype=torch.float64))
    x = torch.randn(2, 2, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(load_model(dst).net(x), net.eval()(x), rtol=0, atol=0)


def test_convert_checkpoint_refuses_objects_it_cannot_make_plain(tmp_path):
    from downpour.core.checkpoint import convert_checkpoint

    src = tmp_path / "odd.ckpt"
    _srdrn_checkpoint(src, CFG, INFO, extra=[1, {"thing": object}])
    with pytest.raises(DownpourError, match=r"checkpoint\.extra\[1\]\.thing holds a builtins.type"):
        convert_checkpoint(src, tmp_path / "out.ckpt", trust=True)
    assert not (tmp_path / "out.ckpt").exists()


def test_resume_refuses_a_crafted_checkpoint_before_it_runs(tmp_path):
    from downpour.training.fit import check_resume

    marker = tmp_path / "pwned"
    path = tmp_path / "last.ckpt"
    _srdrn_checkpoint(path, CFG, INFO, evil=_Payload(str(marker)))
    with pytest.raises(DownpourError, match=r"^--resume: checkpoint .*cannot be read safely"):
        check_resume(path, "srdrn")
    assert not marker.exists()
    good = tmp_path / "good.ckpt"
    _srdrn_checkpoint(good, CFG, INFO)
    check_resume(good, "srdrn")
    with pytest.raises(DownpourError, match="not a downpour cVAE checkpoint"):
        check_resume(good, "cvae")
