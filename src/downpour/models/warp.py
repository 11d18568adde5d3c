"""Differentiable semi-Lagrangian advection of fields along a motion field (torch).

A motion field ``V`` ``(B, 2, H, W)`` gives, in pixels per time step, the x
(column) and y (row) velocity of the rain at each pixel, as pysteps' optical
flow does (``V[:, 0]`` x, ``V[:, 1]`` y). The field valid ``k`` steps later at
pixel ``p`` is the field now at ``p + D_k(p)``, where the backward
displacement ``D_k`` follows the trajectory back through the flow, one step at
a time with the velocity taken at the midpoint of the step (the scheme of
Germann and Zawadzki 2002, as ``pysteps.extrapolation.semilagrangian`` with
``n_iter=1``)::

    v = V(p);  for each step:  v = V(p + D − v/2);  D = D − v;  v = V(p + D)

The field is sampled once per lead at ``p + D_k`` (bilinear), not
re-interpolated step after step, so an advected field does not blur with the
lead. Velocities outside the grid are those of the nearest edge pixel; a
pixel whose source lies outside the grid (beyond the centres of the edge
pixels) gets ``fill``: no rain flows in from outside. This is pysteps'
scheme to rounding (``map_coordinates`` of order 1, mode ``constant``).

Examples
--------
>>> field = torch.zeros(1, 1, 5, 6)
>>> field[0, 0, 2, 1] = 1.0
>>> motion = torch.zeros(1, 2, 5, 6)
>>> motion[:, 0] = 1.0  # one pixel per step to the right (x)
>>> advect(field, motion, 2)[0, 1].nonzero().tolist()  # two steps later
[[2, 3]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["advect", "displacements", "warp"]


def _grid(displacement: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` pixel displacement → ``(B, H, W, 2)`` grid_sample coordinates."""
    b, _, h, w = displacement.shape
    ys = torch.arange(h, dtype=displacement.dtype, device=displacement.device)
    xs = torch.arange(w, dtype=displacement.dtype, device=displacement.device)
    x = xs[None, None, :] + displacement[:, 0]
    y = ys[None, :, None] + displacement[:, 1]
    # align_corners=True: −1 and +1 are the centres of the first and last pixel
    gx = 2.0 * x / max(w - 1, 1) - 1.0
    gy = 2.0 * y / max(h - 1, 1) - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp(field: torch.Tensor, displacement: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Sample ``field`` at ``p + displacement(p)`` (bilinear), ``fill`` from outside the grid.

    Parameters
    ----------
    field
        ``(B, C, H, W)``.
    displacement
        ``(B, 2, H, W)``: x and y offsets in pixels of where each pixel's value comes from.
    fill
        Value of the field outside the grid (e.g. the no-rain value of the
        network's space: 0 for log1p, −15 for dBR).

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``; differentiable in ``field`` and ``displacement``.
    """
    grid = _grid(displacement)
    out = F.grid_sample(
        field - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    inside = (grid.abs() <= 1.0 + 1e-6).all(dim=-1)[:, None]  # (B, 1, H, W)
    return torch.where(inside, out + fill, torch.full_like(out, fill))


def displacements(motion: torch.Tensor, steps: int) -> torch.Tensor:
    """Backward displacements ``D_1 … D_steps`` of a constant motion field (module docstring).

    Parameters
    ----------
    motion
        ``(B, 2, H, W)``: x and y velocity in pixels per step.
    steps
        Number of steps.

    Returns
    -------
    torch.Tensor
        ``(B, steps, 2, H, W)``: ``D_k``, the offset from each pixel back to
        where its value was ``k`` steps earlier.

    Examples
    --------
    >>> d = displacements(torch.full((1, 2, 3, 3), 0.5), 3)
    >>> d[0, :, 0, 1, 1].tolist()  # uniform motion: D_k = −k·V
    [-0.5, -1.0, -1.5]
    """
    if steps < 1:
        raise ValueError(f"displacements: steps must be ≥ 1, got {steps}")

    def velocity(at: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(
            motion, _grid(at), mode="bilinear", padding_mode="border", align_corners=True
        )

    d = torch.zeros_like(motion)
    v = motion
    out = []
    for _ in range(steps):
        v = velocity(d - v / 2.0)
        d = d - v
        v = velocity(d)
        out.append(d)
    return torch.stack(out, dim=1)


def advect(
    field: torch.Tensor, motion: torch.Tensor, steps: int, fill: float = 0.0
) -> torch.Tensor:
    """Advect a field along a constant motion field for ``steps`` steps.

    Parameters
    ----------
    field
        ``(B, 1, H, W)``: the field now.
    motion
        ``(B, 2, H, W)``: x and y velocity in pixels per step.
    steps
        Number of leads.
    fill
        Value flowing in from outside the grid.

    Returns
    -------
    torch.Tensor
        ``(B, steps, H, W)``: the field at leads ``1 … steps``, each sampled
        once from ``field`` (:func:`warp` at :func:`displacements`).
    """
    d = displacements(motion, steps)  # (B, K, 2, H, W)
    b, k, _, h, w = d.shape
    src = field.expand(b, 1, h, w).repeat_interleave(k, dim=0)  # (B·K, 1, H, W)
    out = warp(src, d.reshape(b * k, 2, h, w), fill)
    return out.reshape(b, k, h, w)
