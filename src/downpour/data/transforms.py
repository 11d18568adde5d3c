"""Augmentations of physical-unit samples: random flips and multiplicative rain noise.

A *sample* is a dict of torch tensors in physical units (before normalisation):

========  ==========================================  =====================================
key       shape                                       content
========  ==========================================  =====================================
``x``     ``(C, h, w)``                               low-res predictors
``y``     ``(1, H, W)`` or ``(H, W)``                 high-res precipitation (≥ 0)
``s``     ``(S, H, W)``                               static fields
``mask``  ``(1, H, W)``                               valid target cells (bool)
========  ==========================================  =====================================

Every transform works equally on a batch: when ``x`` has leading dimensions
beyond ``(C, h, w)`` (e.g. ``(B, C, h, w)`` after collation), those are the
batch dimensions, every other spatial tensor must carry them too, and the
random decisions (flip or not) are drawn per item of the batch. Keys other
than the four above are passed through untouched. Transforms never modify
their input in place; they return a new dict.

Randomness
----------
Each transform draws from the ``torch.Generator`` given at construction, or
from torch's global RNG when none is given (the default). Use the global RNG
inside ``DataLoader`` workers: PyTorch seeds it differently in every worker
(``base_seed + worker_id``), whereas a generator passed here is copied into
each worker with the same state, so all workers would draw the same flips.
Pass a generator for reproducible single-process use and in tests.

Examples
--------
>>> t = build_transform(flips=True, noise=0.02, precip_channels=[0])
>>> sample = {"x": torch.rand(2, 4, 4), "y": torch.rand(1, 24, 24),
...           "s": torch.rand(3, 24, 24), "mask": torch.ones(1, 24, 24, dtype=torch.bool)}
>>> out = t(sample)
>>> out["y"].shape
torch.Size([1, 24, 24])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "SPATIAL_KEYS",
    "Compose",
    "MultiplicativeNoise",
    "RandomFlip",
    "Sample",
    "build_transform",
]

Sample = dict[str, torch.Tensor]
Transform = Callable[[Sample], Sample]

#: Keys of a sample that hold fields on a grid; flips act on these.
SPATIAL_KEYS = ("x", "y", "s", "mask")


def _batch_shape(sample: Sample) -> tuple[int, ...]:
    """Leading (batch) dimensions of a sample: those of ``x`` beyond ``(C, h, w)``."""
    x = sample.get("x")
    if x is None:
        return ()
    if x.ndim < 3:
        raise ValueError(f"sample 'x' must have shape (..., C, h, w), got {tuple(x.shape)}")
    return tuple(x.shape[:-3])


def _per_item(decision: torch.Tensor, t: torch.Tensor, key: str) -> torch.Tensor:
    """Reshape per-item ``decision`` (batch shape) to broadcast against ``t``."""
    lead = decision.ndim
    if tuple(t.shape[:lead]) != tuple(decision.shape) or t.ndim < lead + 2:
        raise ValueError(
            f"sample {key!r} of shape {tuple(t.shape)} does not carry the batch dimensions "
            f"{tuple(decision.shape)} of 'x' followed by (..., H, W)"
        )
    return decision.reshape(*decision.shape, *([1] * (t.ndim - lead))).to(t.device)


class RandomFlip:
    """Flip every spatial field of a sample left-right and/or up-down.

    ``x``, ``y``, ``s`` and ``mask`` are flipped along the same axes, so the
    high-res grid (exactly ``scale_factor`` × the low-res grid) stays aligned
    with the low-res one: low-res cell ``j`` covers high-res cells
    ``j·f … j·f+f-1``, and after the flip cell ``w-1-j`` covers the mirrored
    cells.

    Parameters
    ----------
    p_horizontal
        Probability of a left-right flip (along the last axis, ``x``/width).
    p_vertical
        Probability of an up-down flip (along the second-to-last axis, ``y``/height).
    generator
        Source of randomness; ``None`` uses torch's global RNG (see the module docstring).

    Examples
    --------
    >>> flip = RandomFlip(p_horizontal=1.0, p_vertical=0.0)
    >>> flip({"y": torch.tensor([[1.0, 2.0, 3.0]])})["y"]
    tensor([[3., 2., 1.]])
    """

    def __init__(
        self,
        p_horizontal: float = 0.5,
        p_vertical: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        for name, p in (("p_horizontal", p_horizontal), ("p_vertical", p_vertical)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"RandomFlip: {name} must be in [0, 1], got {p}")
        self.p_horizontal = float(p_horizontal)
        self.p_vertical = float(p_vertical)
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        """Return a flipped copy of ``sample`` (shapes unchanged)."""
        batch = _batch_shape(sample)
        out = dict(sample)
        for p, dim in ((self.p_horizontal, -1), (self.p_vertical, -2)):
            if p == 0.0:
                continue
            flip = torch.rand(batch, generator=self.generator) < p
            for key in SPATIAL_KEYS:
                t = out.get(key)
                if t is None:
                    continue
                if not batch:
                    if flip:
                        out[key] = t.flip(dim)
                else:
                    out[key] = torch.where(_per_item(flip, t, key), t.flip(dim), t)
        return out

    def __repr__(self) -> str:
        return f"RandomFlip(p_horizontal={self.p_horizontal}, p_vertical={self.p_vertical})"


def _lognormal_rain(
    t: torch.Tensor, sigma: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Multiply wet values by ``exp(σε − σ²/2)``, ε ~ N(0, 1) per cell; others unchanged."""
    eps = torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
    factor = torch.exp(sigma * eps - 0.5 * sigma * sigma)
    return torch.where(t > 0, t * factor, t)


class MultiplicativeNoise:
    """Log-normal, mean-preserving noise on rain: ``y ← y · exp(σε − σ²/2)`` where ``y > 0``.

    ε is drawn independently per cell from N(0, 1), so ``E[exp(σε − σ²/2)] = 1``
    and the expected value of every wet cell is unchanged. Cells with
    ``y ≤ 0`` (dry pixels, masked cells) are returned exactly as they are:
    rain never becomes negative and a dry pixel never becomes wet. The same
    rule, with independent draws, is applied to the predictor channels listed
    in ``channels`` (the precipitation predictors); other predictors, ``s``
    and ``mask`` are untouched.

    Parameters
    ----------
    sigma
        Standard deviation of the noise in log space (``0`` = identity).
        ``train.noise`` in the config.
    channels
        Indices of predictor channels (axis ``-3`` of ``x``) that are
        precipitation and receive the same noise.
    generator
        Source of randomness; ``None`` uses torch's global RNG (see the module docstring).

    Examples
    --------
    >>> noise = MultiplicativeNoise(0.1)
    >>> y = torch.tensor([[0.0, 5.0]])
    >>> out = noise({"y": y})["y"]
    >>> bool(out[0, 0] == 0) and bool(out[0, 1] > 0)
    True
    """

    def __init__(
        self,
        sigma: float,
        channels: Sequence[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        if not (sigma >= 0.0 and math.isfinite(sigma)):
            raise ValueError(
                f"MultiplicativeNoise: sigma must be a finite number >= 0, got {sigma}"
            )
        self.sigma = float(sigma)
        self.channels = tuple(int(c) for c in channels)
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        """Return a copy of ``sample`` with noisy ``y`` and precipitation channels of ``x``."""
        out = dict(sample)
        if self.sigma == 0.0:
            return out
        if "y" in out:
            out["y"] = _lognormal_rain(out["y"], self.sigma, self.generator)
        if self.channels and "x" in out:
            x = out["x"]
            n_channels = x.shape[-3]
            bad = [c for c in self.channels if not -n_channels <= c < n_channels]
            if bad:
                raise ValueError(
                    f"MultiplicativeNoise: channels {bad} out of range for x with "
                    f"{n_channels} channels (shape {tuple(x.shape)})"
                )
            x = x.clone()
            idx = sorted({c % n_channels for c in self.channels})
            x[..., idx, :, :] = _lognormal_rain(x[..., idx, :, :], self.sigma, self.generator)
            out["x"] = x
        return out

    def __repr__(self) -> str:
        return f"MultiplicativeNoise(sigma={self.sigma}, channels={list(self.channels)})"


class Compose:
    """Apply transforms one after the other.

    Parameters
    ----------
    transforms
        Callables taking and returning a sample dict.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        """Return ``sample`` passed through every transform in order."""
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def build_transform(
    flips: bool,
    noise: float,
    precip_channels: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> Compose | None:
    """Build the training augmentation from ``train.flips`` and ``train.noise``.

    Parameters
    ----------
    flips
        Add :class:`RandomFlip` (p = 0.5 on each axis).
    noise
        ``sigma`` of :class:`MultiplicativeNoise`; ``0`` = no noise.
    precip_channels
        Indices of the precipitation predictors (those with ``x_log1p`` set
        in the :class:`~downpour.data.normalize.Normalization`).
    generator
        Shared by the transforms; ``None`` = torch's global RNG (right for
        ``DataLoader`` workers).

    Returns
    -------
    Compose or None
        ``None`` when both are off, so a dataset can skip the call entirely.
    """
    transforms: list[Transform] = []
    if flips:
        transforms.append(RandomFlip(generator=generator))
    if noise > 0:
        transforms.append(MultiplicativeNoise(noise, precip_channels, generator=generator))
    elif noise < 0:
        raise ValueError(f"build_transform: noise must be >= 0 (train.noise), got {noise}")
    return Compose(transforms) if transforms else None
