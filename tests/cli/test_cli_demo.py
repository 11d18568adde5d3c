"""`downpour demo`: the main job's steps in order, on the quarter data section."""

from click.testing import CliRunner

from _shared import QUARTER, TINY_CVAE
from downpour.cli.main import cli

SMALL = [*QUARTER, *TINY_CVAE, "train.batch_size=8", "train.checkpoint_every=1"]


def test_cli_demo_runs_the_main_job(tmp_path):
    args = ["demo", "--out", str(tmp_path / "run"), "--set", "train.epochs=1", "--n-boot", "20"]
    tiny_srdrn = ["srdrn.filters=4", "srdrn.res_blocks=1", "srdrn.upsample_filters=8",
                  "srdrn.epochs=1", "srdrn.batches_per_epoch=2", "sampling.members=2"]  # fmt: skip
    for item in [*SMALL, *tiny_srdrn]:
        args += ["--set", item]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    out = res.output
    # steps in order: data card, cVAE, sample quality, verification table, verdict, report
    marks = ["heavy", "[2/8]", "sample quality", "verification on", "srdrn_augmented − srdrn_real",
             "report:"]  # fmt: skip
    positions = [out.index(m) for m in marks]
    assert positions == sorted(positions)
    assert (tmp_path / "run" / "report.html").is_file()
    assert (tmp_path / "run" / "data" / "card.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "cvae" / "best.ckpt").is_file()
    for mode in ("posterior", "prior"):
        assert (tmp_path / "run" / "samples" / f"{mode}_train.zarr" / "zarr.json").is_file()
