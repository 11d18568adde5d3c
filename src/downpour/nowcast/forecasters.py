"""The nowcast methods: one registry, one signature (``model``, ``persistence``, ``extrapolation``).

Every method is registered in :data:`FORECASTERS` and called the same way::

    leads = FORECASTERS.get(method)(source, init, n_leads, **context)

- ``source``: rain rate in mm/h, dims ``(time, y, x)``, at the model step;
- ``init``: index in ``source.time`` of the last observed frame; lead ``k`` is
  valid at ``time[init] + k · step``. Each method checks that the frames it
  reads can start a forecast (:func:`~downpour.nowcast.inits.check_window`);
- ``n_leads``: number of leads;
- ``context``: keywords, of which each method takes what it needs and
  ignores the rest: ``net``, ``n_frames``, ``transform``, ``prob_match`` and
  ``prob_match_smooth``
  (the trained network, :func:`model_leads`); ``n_frames``
  (:func:`extrapolation_leads`);
- ``leads``: ``(n_leads, H, W)`` float64 mm/h, raw: the forecast dataset
  (:func:`downpour.nowcast.forecast.forecast_dataset`) clips negative rates
  and sets cells outside the radar domain (NaN at ``init``) to NaN.

Examples
--------
>>> import xarray as xr
>>> t = np.datetime64("2021-07-01T00:00", "ns") + np.arange(3) * np.timedelta64(1, "h")
>>> da = xr.DataArray(np.arange(12.0).reshape(3, 2, 2), dims=("time", "y", "x"),
...                   coords={"time": t}, attrs={"step_minutes": 60})
>>> FORECASTERS.names()
['extrapolation', 'model', 'persistence']
>>> FORECASTERS.get("persistence")(da, 1, 2, n_frames=3)[:, 0].tolist()
[[4.0, 5.0], [4.0, 5.0]]
>>> from downpour.core.errors import DownpourError
>>> try:
...     FORECASTERS.get("climatology")
... except DownpourError as exc:
...     print(exc)
unknown nowcast method 'climatology'; valid names: extrapolation, model, persistence
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from downpour.core.registry import Registry
from downpour.data.rain import (
    TransformKind,
    inverse_rain_transform,
    no_rain_value,
    rain_transform,
    temporal_encoding,
)
from downpour.nowcast.inits import check_window, step_ns
from downpour.nowcast.module import rollout_batch
from downpour.nowcast.motion import lk_motion, require_pysteps

__all__ = [
    "FORECASTERS",
    "Forecaster",
    "extrapolation_leads",
    "init_motion",
    "model_leads",
    "persistence_leads",
    "probability_match",
    "require_pysteps",
]

#: ``(source, init, n_leads, **context) -> (n_leads, H, W)`` mm/h (module docstring).
Forecaster = Callable[..., np.ndarray]

#: The nowcast methods by name: ``model``, ``persistence``, ``extrapolation``.
FORECASTERS: Registry[Forecaster] = Registry("nowcast method")


@FORECASTERS.register("model")
def model_leads(
    source: xr.DataArray,
    init: int,
    n_leads: int,
    *,
    net: nn.Module,
    n_frames: int,
    transform: TransformKind,
    prob_match: bool = False,
    prob_match_smooth: int = 3,
    **context: Any,
) -> np.ndarray:
    """Roll ``net`` forward ``n_leads`` steps from frame ``init``, feeding predictions back.

    Parameters
    ----------
    source, init, n_leads
        See the module docstring.
    net
        Maps ``(1, n_frames, H, W)`` transformed frames and ``(1, 4)`` temporal
        encoding of the target time to the next frame ``(1, 1, H, W)``.
    n_frames, transform
        The network's input frames and rain transform.
    prob_match
        Give every prediction, before it is fed back, the value distribution
        of the init frame over the radar domain (:func:`probability_match`,
        ranking the ``prob_match_smooth`` × ``prob_match_smooth`` mean of the
        prediction; 1: its exact ranks).
    **context
        Ignored (the other methods' keywords). A network with
        ``needs_motion`` (the advection model) gets the Lucas-Kanade motion of
        the ``max(2, n_frames)`` frames ending at ``init``
        (:func:`init_motion`; ``context["motion"]`` when given), as the
        extrapolation baseline.

    Returns
    -------
    numpy.ndarray
        ``(n_leads, H, W)`` float64 mm/h.
    """
    check_window(source, init, n_frames)
    frames = np.asarray(source.values[init - n_frames + 1 : init + 1], dtype=np.float32)
    x = rain_transform(frames, transform)
    x = np.where(np.isfinite(x), x, np.float32(no_rain_value(transform))).astype(np.float32)
    t0 = source["time"].values[init].astype("datetime64[ns]")
    leads = np.arange(1, n_leads + 1, dtype=np.int64) * step_ns(source)
    valid = t0 + leads.astype("timedelta64[ns]")
    enc = torch.from_numpy(temporal_encoding(valid))[None]
    param = next(net.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    post = None
    if prob_match:
        domain = torch.from_numpy(np.isfinite(frames[-1]))
        reference = torch.from_numpy(x[-1]).to(dtype)

        def post(pred: torch.Tensor) -> torch.Tensor:
            matched = probability_match(pred[0, 0], reference, domain, smooth=prob_match_smooth)
            return matched[None, None]

    motion = None
    if getattr(net, "needs_motion", False):  # the advection model: motion of the input frames
        v = init_motion(source, init, n_frames, context.get("motion"), "the advection nowcaster")
        motion = torch.from_numpy(v)[None].to(dtype)
    with torch.no_grad():
        inputs = torch.from_numpy(x)[None].to(dtype)
        preds = rollout_batch(net, inputs, enc.to(dtype), post=post, motion=motion)[0]
    return inverse_rain_transform(preds.double().numpy(), transform)


@FORECASTERS.register("persistence")
def persistence_leads(source: xr.DataArray, init: int, n_leads: int, **context: Any) -> np.ndarray:
    """Repeat the last observed frame at every lead (``context`` is ignored)."""
    check_window(source, init, 1)
    return np.repeat(np.asarray(source.values[init], dtype=np.float64)[None], n_leads, axis=0)


@FORECASTERS.register("extrapolation")
def extrapolation_leads(
    source: xr.DataArray, init: int, n_leads: int, *, n_frames: int = 4, **context: Any
) -> np.ndarray:
    """Nowcast by pysteps optical-flow extrapolation (Lucas-Kanade, semi-Lagrangian).

    The motion field is estimated from the ``max(2, n_frames)`` frames ending
    at ``init`` in dBR (``pysteps.motion.get_method("LK")``), and the init
    frame (mm/h, no-data as 0) is advected ``n_leads`` steps
    (``pysteps.nowcasts.get_method("extrapolation")``); no-data in the result
    is 0. Needs pysteps (and OpenCV for Lucas-Kanade); ``context`` besides
    ``n_frames`` and ``motion`` (:func:`init_motion`) is ignored.
    """
    _, nowcasts = require_pysteps()
    velocity = init_motion(source, init, n_frames, context.get("motion"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        last = np.nan_to_num(np.asarray(source.values[init], dtype=np.float64), nan=0.0)
        rate = nowcasts.get_method("extrapolation")(last, velocity, n_leads)
    return np.nan_to_num(rate, nan=0.0)


def init_motion(
    source: xr.DataArray,
    init: int,
    n_frames: int,
    motion: np.ndarray | None = None,
    what: str = "the extrapolation baseline",
) -> np.ndarray:
    """Lucas-Kanade motion ``(2, H, W)`` of the ``max(2, n_frames)`` frames ending at ``init``.

    ``motion``, when the caller already has it for this init (verification
    computes it once for the advection model and the extrapolation baseline),
    is returned as it is; the frames are checked either way.
    """
    n = max(2, n_frames)
    check_window(source, init, n)
    if motion is not None:
        return motion
    return lk_motion(np.asarray(source.values[init - n + 1 : init + 1], dtype=np.float64), what)


def probability_match(
    field: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor, *, smooth: int = 1
) -> torch.Tensor:
    """Give ``field`` the value distribution of ``reference`` over ``valid``, keeping its ranks.

    The ``k``-th smallest valid value of ``field`` becomes the ``k``-th
    smallest valid value of ``reference`` (empirical CDF matching, as
    pysteps' ``probmatching.nonparam_match_empirical_cdf``): where rain falls
    stays the network's choice, how much rain and how sharp is the
    observation's. It keeps a rollout from fading or exploding by
    construction. Cells outside ``valid`` are unchanged.

    Parameters
    ----------
    field, reference
        ``(H, W)``.
    valid
        ``(H, W)`` bool.
    smooth
        Rank the ``smooth × smooth`` running mean of ``field`` instead of
        ``field`` itself (odd; 1 = exact ranks). A smeared forecast is nearly
        flat, and exact ranks of its pixel-scale noise turn into speckle
        that grows when fed back; smoothed ranks keep coherent rain areas.

    Returns
    -------
    torch.Tensor
        ``(H, W)``.

    Examples
    --------
    >>> f = torch.tensor([[0.2, 0.9], [0.5, 0.1]])
    >>> r = torch.tensor([[0.0, 0.0], [3.0, 8.0]])
    >>> probability_match(f, r, torch.ones(2, 2, dtype=torch.bool)).tolist()
    [[0.0, 8.0], [3.0, 0.0]]
    """
    out = field.clone()
    rank = field
    if smooth > 1:
        rank = F.avg_pool2d(
            field[None, None], smooth, stride=1, padding=smooth // 2, count_include_pad=False
        )[0, 0]
    flat, idx = out.reshape(-1), valid.reshape(-1).nonzero().squeeze(1)
    order = torch.argsort(rank.reshape(-1)[idx], stable=True)
    flat[idx[order]] = torch.sort(reference.reshape(-1)[idx]).values.to(out.dtype)
    return out
