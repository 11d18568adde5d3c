"""Distributed data parallel training on CPU: two gloo ranks through `downpour train cvae`.

The command runs as a subprocess (tests/training/ddp_script.py records what each rank
trained on); Lightning's ``ddp`` launcher starts rank 1 by running the same
command again.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from _shared import ROOT, copy_run
from downpour.config import load_config
from downpour.data.sampler import StratifiedBatchSampler
from downpour.downscaling.dataset import PrecipDataset

SCRIPT = Path(__file__).resolve().parent / "ddp_script.py"


needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend",
)


def _clean_env() -> dict[str, str]:
    """The environment without launcher variables (a SLURM job, torchrun) that would hijack DDP."""
    launcher = ("SLURM_", "LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_", "NODE_RANK", "GROUP_RANK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    env["OMP_NUM_THREADS"] = "1"
    return env


@needs_gloo
def test_two_cpu_ranks_split_the_days_and_end_with_identical_weights(
    tmp_path, small_overrides, half_year_run
):
    sets = [*small_overrides, "train.epochs=2", "train.min_heavy_fraction=0"]
    cfg = load_config("demo", sets)
    run, rec = tmp_path / "run", tmp_path / "rec"
    copy_run(half_year_run, run)  # prepared with the data section of small_overrides
    cmd = [sys.executable, str(SCRIPT), str(rec), "train", "cvae", "-o", str(run)]
    cmd += ["--devices", "2", "--accelerator", "cpu"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # only rank 0 prints the result
    assert proc.stdout.count("trained 2 epochs") == 1, proc.stdout[-2000:]
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (saved["devices"], saved["accelerator"], saved["num_nodes"]) == (2, "cpu", 1)

    records = [json.loads((rec / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(x["rank"], x["world_size"]) for x in records] == [(0, 2), (1, 2)]
    train = PrecipDataset(run / "data" / "store.zarr", "train")
    assert len(train) == 181  # 2001-01-01 .. 2001-06-30
    all_days = sorted(train.store_index.tolist())
    orders = []
    for epoch in ("0", "1"):
        got = [x["epochs"][epoch] for x in records]
        for r in range(2):
            # each rank received exactly the batches the sampler deals it ...
            sampler = StratifiedBatchSampler(
                train.is_heavy, 16, 0.0, seed=cfg.train.seed, num_replicas=2, rank=r
            )
            sampler.set_epoch(int(epoch))
            assert got[r] == [train.store_index[b].tolist() for b in sampler]
        # ... the same number of batches (12 = ceil(181 / 16), 6 each) ...
        assert [len(g) for g in got] == [6, 6]
        assert [len(b) for b in got[1]] == [16] * 5 + [5]  # the short last batch
        # ... disjoint days whose union is the whole training split, each once
        days = [[d for b in g for d in b] for g in got]
        assert not set(days[0]) & set(days[1])
        assert sorted(days[0] + days[1]) == all_days
        orders.append(days[0] + days[1])
    assert orders[0] != orders[1]  # set_epoch reached the sampler: epoch 1 is a new shuffle

    w0, w1 = (torch.load(rec / f"rank{r}.pt") for r in range(2))
    assert w0.keys() == w1.keys() and len(w0) > 100
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks ended with different weights"
    ckpt = torch.load(run / "checkpoints" / "cvae" / "last.ckpt", weights_only=False)
    assert all(torch.equal(ckpt["state_dict"][f"net.{k}"], v) for k, v in w0.items())
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 12  # 2 epochs × 6 steps per rank


@needs_gloo
def test_ensemble_members_of_one_input_are_decoded_on_its_rank(
    tmp_path, small_overrides, half_year_run
):
    # the ensemble objective under 2-rank DDP: each rank draws all M members of
    # each of its own inputs and scores them against that input's truth
    sets = [*small_overrides, "train.epochs=1", "train.min_heavy_fraction=0",
            "model.arch=lowres", "model.skips=false", "loss.objective=ensemble",
            "loss.beta_kl=0", "loss.lambda_sparse=0", "loss.lambda_focal=0",
            "loss.members=3", "train.monitor=val/CRPS"]  # fmt: skip
    run, rec = tmp_path / "run", tmp_path / "rec"
    copy_run(half_year_run, run)
    cmd = [sys.executable, str(SCRIPT), str(rec), "train", "cvae", "-o", str(run)]
    cmd += ["--devices", "2", "--accelerator", "cpu"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads((rec / f"rank{r}.json").read_text()) for r in range(2)]
    shape = load_config("demo", sets)
    h, w = (int(v) for v in PrecipDataset(run / "data" / "store.zarr", "train")[0]["y"].shape[1:])
    for r in records:
        batches = [len(b) for b in r["epochs"]["0"]]
        calls = r["members"]
        # one members call per training batch: the rank's own inputs, 3 members each,
        # all members of an input in its row of the (inputs, M, H, W) block
        assert [c[0] for c in calls] == batches
        assert all(c[1:] == [3, c[0], 3, h, w] for c in calls)
    assert sum(len(b) for r in records for b in r["epochs"]["0"]) == 181
    assert shape.loss.members == 3
    w0, w1 = (torch.load(rec / f"rank{r}.pt") for r in range(2))
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks ended with different weights"
