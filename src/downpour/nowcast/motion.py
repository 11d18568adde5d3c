"""The motion of radar rain: pysteps' Lucas-Kanade optical flow on a few frames.

:func:`lk_motion` estimates the motion field (pixels per step) from
consecutive frames in mm/h. The extrapolation baseline and the advection
nowcaster (:class:`~downpour.models.advection_nowcast.AdvectionNowcaster`)
both use it, on the same frames, so the model's zero-correction forecast is
the baseline's motion advected by the same scheme.
:func:`window_motions` does it for every training window of a sequence.

Examples
--------
>>> frames = np.zeros((3, 40, 40))
>>> for t in range(3):  # a blob moving 2 pixels per step to the right
...     frames[t, 15:25, 10 + 2 * t : 20 + 2 * t] = 5.0
>>> v = lk_motion(frames)
>>> v.shape, round(float(np.median(v[0, 15:25, 14:22])))
((2, 40, 40), 2)
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.data.rain import rain_transform

__all__ = ["lk_motion", "require_pysteps", "window_motions"]


def require_pysteps(what: str = "the extrapolation baseline") -> tuple[Any, Any]:
    """Import pysteps quietly and return its ``motion`` and ``nowcasts`` modules.

    Parameters
    ----------
    what
        Who needs it, named in the error.

    Raises
    ------
    DownpourError
        When pysteps is not installed.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints a line on import
            from pysteps import motion, nowcasts
    except ImportError:
        raise DownpourError(
            f"{what} needs pysteps' optical flow: pip install 'downpour[nowcast]'"
        ) from None
    return motion, nowcasts


def lk_motion(frames: np.ndarray, what: str = "the extrapolation baseline") -> np.ndarray:
    """Motion field of consecutive frames by pysteps' Lucas-Kanade optical flow.

    Parameters
    ----------
    frames
        ``(T, H, W)`` rain rate in mm/h, oldest first, ``T ≥ 2``; no-data
        (NaN) counts as no rain.
    what
        Who asks, named in the error when pysteps (or OpenCV) is missing.

    Returns
    -------
    numpy.ndarray
        ``(2, H, W)`` float64: x (column) and y (row) velocity in pixels per
        step (``pysteps.motion.get_method("LK")`` on the frames in dBR).
    """
    motion, _ = require_pysteps(what)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"lk_motion needs (T ≥ 2, H, W) frames, got {frames.shape}")
    dbr = rain_transform(np.nan_to_num(np.asarray(frames, dtype=np.float64), nan=0.0), "dbr")
    with warnings.catch_warnings():  # LK's outlier filter warns on sparse or flat fields
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            v = motion.get_method("LK")(dbr, verbose=False)
        except Exception as exc:  # pysteps raises MissingOptionalDependency without OpenCV
            raise DownpourError(f"pysteps Lucas-Kanade motion failed: {exc}") from None
    return np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0)


def window_motions(rate: np.ndarray, starts: np.ndarray, n_frames: int) -> np.ndarray:
    """Motion of the input frames of each window.

    Parameters
    ----------
    rate
        ``(T, H, W)`` mm/h, NaN = no data.
    starts
        Start index of each window; its inputs are ``rate[s : s + n_frames]``.
    n_frames
        Input frames per window (motion from ``max(2, n_frames)`` frames
        ending at the last input, as the extrapolation baseline).

    Returns
    -------
    numpy.ndarray
        ``(len(starts), 2, H, W)`` float32.
    """
    n = max(2, n_frames)
    h, w = rate.shape[-2:]
    out = np.zeros((len(starts), 2, h, w), dtype=np.float32)
    for j, s in enumerate(starts):
        end = int(s) + n_frames
        out[j] = lk_motion(rate[max(end - n, 0) : end], "nowcast.model=advection")
    return out
