"""Shared fixtures: one small embedded run, prepared and trained once per session."""

from pathlib import Path

import pytest

from downpour.config import load_config
from downpour.downscaling.prepare import prepare
from downpour.downscaling.train import train_cvae

SMALL = [
    "data.embedded.n_years=2",
    "data.embedded.height=48",
    "data.embedded.width=36",
    "data.splits.train={start: 2001-01-01, end: 2001-06-30}",
    "data.splits.val={start: 2001-07-01, end: 2001-08-31}",
    "data.splits.test.years=[2002]",
    "data.heavy.quantile=0.9",
    "model.base_filters=8",
    "model.d_z=8",
    "model.d_x=16",
    "model.d_y=16",
    "train.batch_size=16",
    "train.epochs=1",
]


@pytest.fixture(scope="session")
def small_overrides() -> list[str]:
    """``--set`` overrides of the small run (48×36, two years, tiny cVAE)."""
    return list(SMALL)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with a 48×36 embedded store and a cVAE trained for one epoch."""
    run = tmp_path_factory.mktemp("small_run")
    cfg = load_config("demo", SMALL)
    prepare(cfg, run)
    train_cvae(cfg, run, echo=lambda *a: None, enable_progress_bar=False)
    return run


@pytest.fixture(scope="session")
def sampled_run(trained_run: Path) -> Path:
    """The small run with posterior samples of its heavy training days (K=3, no threshold)."""
    from downpour.config import SamplingConfig
    from downpour.downscaling.sampling import sample_cvae
    from downpour.downscaling.samples import write_samples

    s = SamplingConfig(mode="posterior", members=3, seed=3, pixel_threshold=0.0, batch_size=8)
    ds = sample_cvae(
        [trained_run / "checkpoints" / "cvae" / "last.ckpt"],
        trained_run / "data" / "store.zarr",
        s,
        progress=False,
    )
    write_samples(ds, trained_run / "samples" / "posterior_train.zarr")
    return trained_run
