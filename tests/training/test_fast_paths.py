"""Training with the fast paths: channels_last changes speed, not results."""

from __future__ import annotations

import pytest
import torch

from _shared import HALF_YEAR_Q95, TINY_CVAE, copy_run
from downpour.config import load_config
from downpour.downscaling.train import train_cvae

SMALL = [*HALF_YEAR_Q95, *TINY_CVAE, "train.epochs=1"]


@pytest.mark.parametrize("extra", [["train.channels_last=true"]])
def test_training_with_channels_last_matches_fp32_nchw(half_year_q95_run, tmp_path, extra):
    """One epoch with NHWC tensors ends within float rounding of the NCHW run.

    Without dropout: its mask is drawn in memory order, so NHWC draws
    other (equally random) masks than NCHW.
    """
    runs = {}
    for name, over in (("nchw", []), ("nhwc", extra)):
        run = tmp_path / name
        copy_run(half_year_q95_run, run)
        cfg = load_config(
            "demo", [*SMALL, "train.max_batches_per_epoch=4", "model.dropout=0", *over]
        )
        res = train_cvae(cfg, run, echo=lambda *a: None, enable_progress_bar=False)
        runs[name] = torch.load(res.last_checkpoint, map_location="cpu", weights_only=False)
    a, b = runs["nchw"]["state_dict"], runs["nhwc"]["state_dict"]
    assert list(a) == list(b)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4  # 4 Adam steps at lr 1e-3: rounding differences only
    assert b["net.enc_x.levels.0.conv.0.weight"].is_contiguous(memory_format=torch.channels_last)
