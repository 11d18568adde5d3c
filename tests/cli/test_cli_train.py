"""`downpour train cvae`: trains in a run; a missing --resume checkpoint is one error."""

from click.testing import CliRunner

from _shared import QUARTER, TINY_CVAE, copy_run
from downpour.cli.main import cli

SMALL = [*QUARTER, *TINY_CVAE, "train.batch_size=8", "train.checkpoint_every=1"]


def test_cli_train_cvae(quarter_run, tmp_path):
    run = copy_run(quarter_run, tmp_path / "run")
    args = ["train", "cvae", "--config", "demo", "--out", str(run), "--set", "train.epochs=1"]
    for item in SMALL:
        args += ["--set", item]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "parameters" in res.output and "trained 1 epochs" in res.output
    assert (run / "checkpoints" / "cvae" / "last.ckpt").is_file()


def test_cli_resume_missing_checkpoint(tmp_path):
    res = CliRunner().invoke(
        cli, ["train", "cvae", "--out", str(tmp_path), "--resume", "nope.ckpt"]
    )
    assert res.exit_code == 2 and "nope.ckpt" in res.output and "Traceback" not in res.output
