"""Fixtures shared by every test folder: thread limit, prepared and trained small runs.

Prepared runs (one per data section of :mod:`_shared`, built once per session)
are read-only: a test that writes into a run copies it first with
:func:`_shared.copy_run`; a shared run that changed during the session fails
its fixture's teardown. Trained runs are built once per session too.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import _shared` from every folder

from _shared import (  # noqa: E402
    HALF_YEAR,
    HALF_YEAR_Q95,
    NOWCAST_TINY_RUN,
    QUARTER,
    QUARTER_JAN,
    SMALL,
    TINY_SRDRN,
    copy_run,
    fingerprint,
    one_torch_thread,
)
from downpour.config import load_config  # noqa: E402
from downpour.downscaling.prepare import prepare  # noqa: E402
from downpour.downscaling.train import train_cvae  # noqa: E402


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a whole module (tiny networks run faster on a shared CPU).

    Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def small_overrides() -> list[str]:
    """``--set`` overrides of the small run (48×36, two years, tiny cVAE): ``_shared.SMALL``."""
    return list(SMALL)


def _prepared(factory: pytest.TempPathFactory, name: str, overrides: list[str]) -> Iterator[Path]:
    """Prepare the demo preset with ``overrides``; check at the end that no test wrote to it."""
    run = factory.mktemp(name)
    prepare(load_config("demo", overrides), run)
    before = fingerprint(run)
    yield run
    assert fingerprint(run) == before, f"a test wrote into the shared run {run}: use copy_run"


@pytest.fixture(scope="session")
def half_year_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A prepared run of :data:`_shared.HALF_YEAR` (181 training days; read-only)."""
    yield from _prepared(tmp_path_factory, "half_year", HALF_YEAR)


@pytest.fixture(scope="session")
def half_year_q95_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A prepared run of :data:`_shared.HALF_YEAR_Q95` (181 training days; read-only)."""
    yield from _prepared(tmp_path_factory, "half_year_q95", HALF_YEAR_Q95)


@pytest.fixture(scope="session")
def quarter_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A prepared run of :data:`_shared.QUARTER` (90 training days, test 2002; read-only)."""
    yield from _prepared(tmp_path_factory, "quarter", QUARTER)


@pytest.fixture(scope="session")
def quarter_jan_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A prepared run of :data:`_shared.QUARTER_JAN` (90 training days, 31 test days; read-only)."""
    yield from _prepared(tmp_path_factory, "quarter_jan", QUARTER_JAN)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, half_year_run: Path) -> Path:
    """The half-year run with a cVAE of :data:`_shared.SMALL` trained for one epoch."""
    run = copy_run(half_year_run, tmp_path_factory.mktemp("small_run") / "run")
    train_cvae(load_config("demo", SMALL), run, echo=lambda *a: None, enable_progress_bar=False)
    return run


@pytest.fixture(scope="session")
def tiny_srdrn(
    quarter_jan_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """``(run, checkpoint)``: the quarter_jan run with a tiny SRDRN trained for two steps.

    Read-only: the downscale tests write their outputs elsewhere.
    """
    from downpour.downscaling.train import train_srdrn

    run = copy_run(quarter_jan_run, tmp_path_factory.mktemp("tiny_srdrn") / "run")
    with one_torch_thread():
        train_srdrn(load_config("demo", [*QUARTER_JAN, *TINY_SRDRN]), run,
                    echo=lambda *a: None, enable_progress_bar=False, kind="srdrn_real")  # fmt: skip
    return run, run / "checkpoints" / "srdrn_real" / "best.ckpt"


@pytest.fixture(scope="session")
def sampled_run(trained_run: Path) -> Path:
    """The small run with posterior samples of its heavy training days (K=3, no threshold)."""
    from downpour.config import SamplingConfig
    from downpour.downscaling.samples import write_samples
    from downpour.downscaling.sampling import sample_cvae

    s = SamplingConfig(mode="posterior", members=3, seed=3, pixel_threshold=0.0, batch_size=8)
    ds = sample_cvae(
        [trained_run / "checkpoints" / "cvae" / "last.ckpt"],
        trained_run / "data" / "store.zarr",
        s,
        progress=False,
    )
    write_samples(ds, trained_run / "samples" / "posterior_train.zarr")
    return trained_run


@pytest.fixture(scope="session")
def trained_nowcast(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of a tiny run trained through `nowcast train` (shared, read-only)."""
    from click.testing import CliRunner

    from downpour.cli.nowcast import nowcast

    run = tmp_path_factory.mktemp("nowcast_run")
    args = ["train", "--out", run]
    for item in NOWCAST_TINY_RUN:
        args += ["--set", item]
    with one_torch_thread():
        res = CliRunner().invoke(nowcast, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == 0, res.output
    assert "parameters" in res.output and "validation MAE" in res.output
    return run / "checkpoints" / "nowcast" / "last.ckpt"
