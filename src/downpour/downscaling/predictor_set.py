"""The predictor files of a trained model for ``downpour downscale``: found, checked, read.

:func:`channel_sources` says where each of the model's channels is read
(``--predictors`` files matched by variable name, a config's
``data.predictors`` matched by channel name, or the files the model was
trained on); :class:`PredictorSet` opens and checks them all before anything
is written and then reads, converts and regrids a block of days at a time
through the path of ``downpour prepare``
(:mod:`downpour.downscaling.predictors`), so memory does not grow with the
archive; :func:`check_units` refuses a non-precipitation predictor in other
units than in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from downpour.config import Config, DataConfig, VariableSource
from downpour.core.errors import DownpourError
from downpour.core.periods import parse_period
from downpour.data.io import open_file
from downpour.data.regrid import Regridder
from downpour.data.units import parse_units
from downpour.downscaling.model_facts import Facts
from downpour.downscaling.predictors import (
    PredictorFile,
    coarsen_target,
    predictor_regridder,
    predictor_values,
)

__all__ = ["PredictorSet", "channel_sources", "check_units"]


class PredictorSet:
    """The predictor channels of a trained model, read from files a block of days at a time.

    Every file is opened and checked (variables, units, grid coverage) when
    the set is built, before anything is written; :meth:`block` then reads,
    converts and regrids the days asked for.

    Parameters
    ----------
    sources
        One source per channel, in the model's channel order.
    roles
        How each source is named in errors (e.g. ``"--predictors (pr)"``).
    data
        Units, ``regrid``, ``predictor_edge`` and ``negative_tolerance``.
    lat_lr, lon_lr
        The low-res cell centres (1-D or 2-D).
    coarsen
        Per channel, the high-res grid ``(lat, lon)`` and scale factor of a
        perfect-prognosis channel (a file on that grid is block-mean
        coarsened, as in preparation); None for other channels.
    period
        ``"START:END"``: only those days; default every day of the first file.

    Attributes
    ----------
    days
        ``(T,)`` the days (stamps) read, in time order.
    files
        The opened :class:`PredictorFile` of each channel.
    edge_cells
        Per channel, low-res cells filled from the nearest predictor cell.

    Raises
    ------
    DownpourError
        What :meth:`PredictorFile.open` and :class:`~downpour.data.regrid.Regridder`
        refuse, a period holding no day of the first file, a day missing from
        another file.
    """

    def __init__(
        self,
        sources: Sequence[VariableSource],
        roles: Sequence[str],
        data: DataConfig,
        lat_lr: np.ndarray,
        lon_lr: np.ndarray,
        *,
        coarsen: Sequence[tuple[np.ndarray, np.ndarray, int] | None] | None = None,
        period: str | None = None,
    ) -> None:
        self.data = data
        self.files: list[PredictorFile] = []
        self.regrids: list[Regridder | None] = []
        self.factors: list[int | None] = []
        self.edge_cells: dict[str, int] = {}
        daily = data.units == "mm/day"
        coarsen = list(coarsen) if coarsen is not None else [None] * len(sources)
        try:
            for src, role, hires in zip(sources, roles, coarsen, strict=True):
                pf = PredictorFile.open(src, role, units=data.units, daily=daily)
                self.files.append(pf)
                if hires is not None and _on_grid(pf.probe, hires[0], hires[1]):
                    self.regrids.append(None)
                    self.factors.append(hires[2])
                    continue
                regrid = predictor_regridder(pf, data, lat_lr, lon_lr)
                self.regrids.append(regrid)
                self.factors.append(None)
                self.edge_cells[src.name or src.variable] = regrid.edge_cells
            self.days = self._days(period)
            first = f"the first file ({self.files[0].where})"
            self.rows = [pf.locate(self.days, first) for pf in self.files]
        except BaseException:
            self.close()
            raise

    def _days(self, period: str | None) -> np.ndarray:
        first = self.files[0]
        days = np.sort(first.stamps)
        if period is None:
            return days
        start, end = parse_period(period)
        keep = (days >= start.astype("datetime64[ns]")) & (
            days < (end + np.timedelta64(1, "D")).astype("datetime64[ns]")
        )
        if not keep.any():
            raise DownpourError(
                f"--period {start}:{end} holds none of the {days.size} time steps of "
                f"{first.where} (they cover {np.datetime_as_string(days[0], unit='D')} to "
                f"{np.datetime_as_string(days[-1], unit='D')}); choose dates inside that range"
            )
        return days[keep]

    def block(self, block: slice) -> np.ndarray:
        """Predictors of the days ``days[block]``: float32 ``(b, C, h, w)``, physical units."""
        chans = []
        for pf, regrid, factor, rows in zip(self.files, self.regrids, self.factors, self.rows,
                                            strict=True):  # fmt: skip
            if regrid is None:
                assert factor is not None
                chans.append(coarsen_target(pf.read(rows[block]).values, factor))
            else:
                chans.append(
                    predictor_values(pf, rows[block], regrid, self.data.negative_tolerance)
                )
        return np.stack(chans, axis=1).astype(np.float32, copy=False)

    def close(self) -> None:
        """Close every file."""
        for pf in self.files:
            pf.close()


def _on_grid(da: xr.DataArray, lat: np.ndarray, lon: np.ndarray) -> bool:
    """Whether a canonical field lies on the grid ``lat``/``lon`` (1-D or 2-D), within 1e-6°."""
    if "lat" not in da.coords or da.shape[-2:] != (
        (lat.shape[0], lon.shape[-1]) if lat.ndim == 1 else lat.shape
    ):
        return False
    a, b = np.asarray(da["lat"].values), np.asarray(da["lon"].values)
    if a.ndim != lat.ndim:
        return False
    return bool(np.allclose(a, lat, atol=1e-6) and np.allclose(b, lon, atol=1e-6))


def channel_sources(
    facts: Facts,
    channels: list[int],
    predictors: Sequence[Path],
    cfg: Config,
    config_given: bool,
) -> tuple[list[VariableSource], list[str]]:
    """Return where each channel is read: ``--predictors``, ``--config`` or the training files."""
    sources, roles = [], []
    if predictors:
        held: dict[Path, list[str]] = {}
        for path in predictors:
            ds = open_file(path, "--predictors")
            held[path] = [str(v) for v in ds.data_vars]
            ds.close()
        for i in channels:
            p = facts.predictors[i]
            path = next((f for f in predictors if p["variable"] in held[f]), None)
            if path is None:
                files = "; ".join(f"{f}: {', '.join(v) or '(none)'}" for f, v in held.items())
                raise DownpourError(
                    f"--predictors: no file holds the variable '{p['variable']}' of channel "
                    f"{p['name']!r} (kind {p['kind']}, units {p.get('units') or '?'}) that "
                    f"{facts.channels} were trained on; the files hold: {files}. Give files "
                    "with these variables, or map other names with --config (data.predictors "
                    "entries with name:)"
                )
            sources.append(VariableSource(path=path, variable=p["variable"], kind=p["kind"],
                                          name=p["name"]))  # fmt: skip
            roles.append(f"--predictors ({p['name']})")
        return sources, roles
    if config_given and cfg.data.predictors:
        given = {(s.name or s.variable): (k, s) for k, s in enumerate(cfg.data.predictors)}
        missing = [facts.channels[i] for i in channels if facts.channels[i] not in given]
        if missing:
            raise DownpourError(
                f"the checkpoint was trained on channels {facts.channels}; the config's "
                f"data.predictors give {list(given)} (missing {missing}): this is a checkpoint "
                "of another dataset, or name the entries (name:) after the model's channels"
            )
        for i in channels:
            k, src = given[facts.channels[i]]
            if src.kind != facts.predictors[i]["kind"]:
                raise DownpourError(
                    f"data.predictors[{k}] ({facts.channels[i]}) has kind {src.kind}; the model "
                    f"was trained on kind {facts.predictors[i]['kind']}: set kind: "
                    f"{facts.predictors[i]['kind']}"
                )
            sources.append(src)
            roles.append(f"data.predictors[{k}]")
        return sources, roles
    for i in channels:
        p = facts.predictors[i]
        if not p.get("path"):
            raise DownpourError(
                f"the checkpoint records no file for channel {p['name']!r}; give --predictors"
            )
        sources.append(VariableSource(path=Path(p["path"]), variable=p["variable"],
                                      kind=p["kind"], name=p["name"]))  # fmt: skip
        roles.append(f"training predictors ({p['name']})")
    return sources, roles


def _same_units(a: str, b: str) -> bool:
    try:
        return parse_units(a) == parse_units(b)
    except ValueError:
        return " ".join(a.split()) == " ".join(b.split())


def check_units(pset: PredictorSet, facts: Facts, channels: list[int]) -> None:
    """Refuse a non-precipitation predictor whose units differ from the training units."""
    for pf, i in zip(pset.files, channels, strict=True):
        want = facts.predictors[i].get("units")
        if pf.precip or want is None:
            continue  # precipitation is converted; no units recorded: nothing to compare
        if pf.units_in_file is None or not _same_units(pf.units_in_file, str(want)):
            found = (
                "no units attribute" if pf.units_in_file is None else f"units {pf.units_in_file!r}"
            )
            raise DownpourError(
                f"{pf.role}: {pf.where} has {found}; the model was trained on {want!r} "
                f"for channel {facts.channels[i]!r}: convert the values, or give the units with "
                "--config (data.predictors[..].units) when only the attribute is wrong"
            )
