"""The radar sequence of a config, split by time into training | validation | test.

:func:`load_nowcast_source` reads ``nowcast.target`` (or runs the embedded
generator) at the model step and grid. The sequence is cut by time into three
contiguous blocks, training | validation | test (``nowcast.val_fraction``,
``nowcast.test_fraction``; :func:`split_blocks`); windows are built inside
each block, so no window crosses a boundary and no test frame is ever a
training input or target. :class:`NowcastDataModule` serves the training and
validation windows; the shuffle order is a function of (seed, epoch), so a
resumed run replays exactly the batches of an uninterrupted one.
:func:`training_stats` records the range of the training rain for the
rollout range checks.

Examples
--------
>>> split_blocks(20, 0.25, 0.25)["val"]
slice(10, 15, None)
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

from downpour.config import NowcastConfig, VariableSource
from downpour.core.errors import DownpourError
from downpour.data.batching import ShardSampler, ShuffledBatchSampler
from downpour.data.rain import WET
from downpour.data.splits import dry_split_warnings
from downpour.nowcast.radar import accumulate, coarsen_radar, load_radar
from downpour.nowcast.synthetic import make_embedded_radar
from downpour.nowcast.windows import NowcastWindows, iso_minute

__all__ = [
    "NowcastDataModule",
    "load_nowcast_source",
    "split_blocks",
    "training_stats",
]


def load_nowcast_source(
    nc: NowcastConfig, source: VariableSource | xr.DataArray | None = None
) -> xr.DataArray:
    """Load the radar sequence of a nowcast config at its step and grid.

    Parameters
    ----------
    nc
        The ``nowcast`` section (``target``, ``step_minutes``, ``coarsen`` and
        the ``embedded_*`` generator settings).
    source
        Overrides ``nc.target``: a radar file, or a rate DataArray in mm/h
        already at the model step (dims ``(time, y, x)``).

    Returns
    -------
    xarray.DataArray
        float32 mm/h, dims ``(time, y, x)``, NaN = no data
        (:func:`downpour.nowcast.radar.load_radar`).
    """
    if isinstance(source, xr.DataArray):
        if tuple(source.dims) != ("time", "y", "x"):
            raise DownpourError(f"nowcast source: expected dims (time, y, x), got {source.dims}")
        return source
    src = source if source is not None else nc.target
    if src is not None:
        return load_radar(src, step_minutes=nc.step_minutes, coarsen=nc.coarsen)
    ds = make_embedded_radar(
        seed=nc.embedded_seed,
        hours=nc.embedded_hours,
        height=nc.embedded_size,
        width=nc.embedded_size,
        step_minutes=nc.embedded_step_minutes,
    )
    da = accumulate(ds["precip_rate"], nc.step_minutes, key="nowcast.step_minutes")
    da.attrs["source"] = ds.attrs["source"]
    return coarsen_radar(da, nc.coarsen) if nc.coarsen > 1 else da


def split_blocks(n_times: int, val_fraction: float, test_fraction: float) -> dict[str, slice]:
    """Contiguous train | val | test index ranges of a time axis of ``n_times`` frames.

    ``train = [0, round(T·(1 − v − t)))``, ``val`` up to ``round(T·(1 − t))``,
    ``test`` the rest.

    Examples
    --------
    >>> split_blocks(10, 0.2, 0.3)
    {'train': slice(0, 5, None), 'val': slice(5, 7, None), 'test': slice(7, 10, None)}
    """
    i_val = int(round(n_times * (1.0 - val_fraction - test_fraction)))
    i_test = int(round(n_times * (1.0 - test_fraction)))
    return {"train": slice(0, i_val), "val": slice(i_val, i_test), "test": slice(i_test, n_times)}


def training_stats(da: xr.DataArray) -> dict[str, float]:
    """Range of the training rain for the rollout checks (mm/h, valid cells only).

    Returns
    -------
    dict
        ``max`` (largest rate), ``mean`` (mean rate), ``mean_max`` (largest
        domain-mean of one frame), ``wet_fraction`` (share of valid cells
        > 0.1 mm/h), ``frames``.
    """
    v = np.asarray(da.values, dtype=np.float64)
    finite = np.isfinite(v)
    n = finite.sum(axis=(1, 2))
    frames = n > 0
    if not frames.any():
        raise DownpourError("nowcast: the training period holds no valid radar pixel")
    frame_mean = np.where(finite, v, 0.0).sum(axis=(1, 2))[frames] / n[frames]
    return {
        "max": float(np.nanmax(v)),
        "mean": float(np.nanmean(v)),
        "mean_max": float(frame_mean.max()),
        "wet_fraction": float((v[finite] > WET).mean()),
        "frames": int(frames.sum()),
    }


def block_wet_fraction(da: xr.DataArray) -> float:
    """Share of valid cells above 0.1 mm/h over the frames of a block (NaN for an empty block)."""
    v = np.asarray(da.values)
    finite = np.isfinite(v)
    return float((v[finite] > WET).mean()) if finite.any() else float("nan")


class NowcastDataModule(L.LightningDataModule):
    """Training and validation windows of one radar sequence, split by time.

    Parameters
    ----------
    da
        Rain rate in mm/h, dims ``(time, y, x)``, at the model step.
    nc
        ``nowcast`` section (frames, steps, transform, fractions, batch size).
    seed
        Shuffle seed (``train.seed``).
    num_workers
        DataLoader workers.

    Attributes
    ----------
    blocks : dict of slice
        Index ranges of :func:`split_blocks`.
    stats : dict
        :func:`training_stats` of the training block.
    wet_fraction : dict
        Share of wet valid cells of each block (``train``, ``val``, ``test``).
    warnings : list of str
        The blocks with far less rain than the training block
        (:func:`downpour.data.splits.dry_split_warnings`).
    """

    def __init__(
        self, da: xr.DataArray, nc: NowcastConfig, *, seed: int = 0, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.nc, self.seed, self.num_workers = nc, seed, num_workers
        self.blocks = split_blocks(da.sizes["time"], nc.val_fraction, nc.test_fraction)
        t = da["time"].values
        sets = {}
        for name in ("train", "val"):
            block = da.isel(time=self.blocks[name])
            sets[name] = NowcastWindows(block, nc.n_frames, nc.rollout_steps, nc.transform)
            if len(sets[name]) == 0:
                span = (
                    f"{block.sizes['time']} frames"
                    if block.sizes["time"] == 0
                    else f"{block.sizes['time']} frames {iso_minute(block['time'].values[0])} .. "
                    f"{iso_minute(block['time'].values[-1])}"
                )
                raise DownpourError(
                    f"nowcast: the {name} period ({span} of {t.size} from "
                    f"{iso_minute(t[0])} .. {iso_minute(t[-1])}) holds no window of "
                    f"{nc.n_frames} + {nc.rollout_steps} consecutive valid frames; "
                    "use a longer sequence, or change nowcast.val_fraction / "
                    "nowcast.test_fraction / nowcast.n_frames / nowcast.rollout_steps"
                )
        self.train_set, self.val_set = sets["train"], sets["val"]
        self.stats = training_stats(da.isel(time=self.blocks["train"]))
        self.wet_fraction = {
            name: block_wet_fraction(da.isel(time=b)) for name, b in self.blocks.items()
        }
        self.warnings = dry_split_warnings(self.wet_fraction, what="block")

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seed, epoch) batches of training windows, dealt whole across DDP ranks."""
        rank, world = self._rank()
        sampler = ShuffledBatchSampler(
            len(self.train_set), self.nc.batch_size, self.seed, rank=rank, world_size=world
        )
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        """Every validation window once, in time order, shared out across DDP ranks."""
        rank, world = self._rank()
        return DataLoader(
            self.val_set,
            batch_size=self.nc.batch_size,
            sampler=ShardSampler(len(self.val_set), rank=rank, world_size=world),
            num_workers=self.num_workers,
        )
