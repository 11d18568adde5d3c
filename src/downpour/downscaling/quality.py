"""``downpour evaluate``: score a samples store, write the JSON and the figures.

:func:`evaluate` is the Python API behind the command. It opens a samples
store written by ``downpour sample``, computes the sample-quality metrics of
:mod:`downpour.metrics.sample_quality`, adds them to
``RUN/metrics/sample_quality.json`` under the store's name (e.g.
``posterior_train``; the other entries are kept) and draws
``RUN/figures/<name>_{members,intensity,rapsd,rapsd_ratio,distributions}.png``
and, with K > 1 members, ``<name>_rank_histogram.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.rundir import RunDir
from downpour.downscaling.samples import open_samples
from downpour.metrics.sample_quality import SampleQuality, evaluate_samples
from downpour.report import figures as plots

__all__ = ["evaluate", "read_quality"]


def evaluate(
    samples: str | Path,
    run_dir: str | Path | None = None,
    *,
    name: str | None = None,
    figures: bool = True,
    wet_threshold: float | None = None,
) -> SampleQuality:
    """Score one samples store and record the result in its run directory.

    Parameters
    ----------
    samples
        Samples store (``RUN/samples/<name>.zarr`` or any path).
    run_dir
        Where ``metrics/`` and ``figures/`` go (default: the store's run).
    name
        Entry name in ``sample_quality.json`` and figure prefix (default:
        the store's file name without extension).
    figures
        Draw the PNG figures.
    wet_threshold
        Wet-cell threshold (default: the store's, else 0.1).

    Returns
    -------
    SampleQuality
    """
    path = Path(samples)
    run = RunDir(run_dir) if run_dir is not None else RunDir.of_samples(path)
    name = name or path.name.split(".")[0]
    ds = open_samples(path)
    quality = evaluate_samples(ds, wet_threshold=wet_threshold, source=str(path))
    quality.summary["samples"] = str(path)
    metrics_path = run.metrics("sample_quality")
    existing = read_quality(metrics_path) if metrics_path.exists() else {}
    existing[name] = quality.summary
    atomic_write_text(metrics_path, json.dumps(existing, indent=2, allow_nan=True) + "\n")
    if figures:
        units = str(ds.attrs.get("units", "mm/day"))
        mode = str(ds.attrs.get("mode", ""))
        label = f"{name} ({mode} mode)" if mode else name
        ds_small = ds[["samples", "target", "mask"]] if "mask" in ds else ds
        plots.save(plots.plot_members(ds_small, units=units,
                                      title=f"Heaviest events: real vs generated, {label}"),
                   run.figure(f"{name}_members"))  # fmt: skip
        plots.save(
            plots.plot_intensity(
                quality.pooled["real"], quality.pooled["generated"], units=units,
                wet_threshold=quality.summary["wet_threshold"], title=label,
            ),
            run.figure(f"{name}_intensity"),
        )  # fmt: skip
        if quality.spectra.data_vars:
            sp = quality.spectra
            curves = {
                "real": (sp["wavenumber"].values, sp["real"].values),
                "generated": (sp["wavenumber"].values, sp["generated"].values),
            }
            plots.save(plots.plot_rapsd(curves, title=f"RAPSD, {label}", units=units),
                       run.figure(f"{name}_rapsd"))  # fmt: skip
        ratio = quality.summary.get("rapsd_ratio")
        if ratio is not None:
            plots.save(
                plots.plot_rapsd_ratio(ratio["wavelength"], ratio["ratio"], factor=ratio["factor"],
                                       min_wavelength=ratio["min_wavelength"],
                                       title=f"RAPSD ratio generated / real, {label}"),
                run.figure(f"{name}_rapsd_ratio"),
            )  # fmt: skip
        ens = quality.summary.get("ensemble")
        if ens is not None:
            plots.save(
                plots.plot_rank_histogram(ens["rank_histogram"]["frequencies"],
                                          title=f"Rank histogram of the real field, {label}"),
                run.figure(f"{name}_rank_histogram"),
            )  # fmt: skip
        plots.save(plots.plot_distributions(quality.per_event, title=label),
                   run.figure(f"{name}_distributions"))  # fmt: skip
    return quality


def read_quality(path: str | Path) -> dict[str, Any]:
    """Read ``metrics/sample_quality.json`` (a run directory or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).metrics("sample_quality")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DownpourError(f"{path} not found; run `downpour evaluate` first") from None
    except json.JSONDecodeError as exc:
        raise DownpourError(f"{path} is not valid JSON ({exc})") from None
