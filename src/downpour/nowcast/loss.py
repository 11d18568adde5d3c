"""The nowcaster's loss: 0.4·L1 + 0.3·spectral + 0.2·MSE + 0.1·gradient (+ FSS; configurable)."""

from __future__ import annotations

import torch

from downpour.losses import Term, fss_loss, gradient_loss, spectral_loss, weighted_sum
from downpour.losses.masked import (
    as_float,
    as_mask,
    batch_mean,
    check_same_shape,
    masked_mean,
    zero_like,
)

__all__ = ["nowcast_loss"]


def nowcast_loss(
    pred: torch.Tensor,
    true: torch.Tensor,
    mask: torch.Tensor,
    *,
    w_l1: float = 0.4,
    w_spectral: float = 0.3,
    w_mse: float = 0.2,
    w_grad: float = 0.1,
    spectral: str = "amplitude",
    w_fss: float = 0.0,
    fss_thresholds: tuple[float, ...] = (),
    fss_scales: tuple[int, ...] = (1, 5, 11),
    fss_sharpness: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return the nowcast loss ``w_l1·L1 + w_spectral·spectral + w_mse·MSE + w_grad·gradient``.

    Plus ``w_fss · (1 − FSS)`` of soft exceedances of ``fss_thresholds`` (in
    the space of ``pred``) at ``fss_scales`` (:func:`~downpour.losses.fractions.fss_loss`),
    the score radar nowcasts are judged by; unlike L1 and MSE it does not
    reward fading rain whose place is uncertain.

    ``L1 = masked_mean |pred − true|``, ``MSE = masked_mean (pred − true)²``,
    ``gradient`` is the signed :func:`gradient_loss` and ``spectral`` compares
    Fourier amplitudes of the masked fields (no-data as 0), per item and step:

    - ``"amplitude"`` (default): ``mean_freq |A(pred) − A(true)|`` with
      ``A = |rfft2(·, norm="ortho")|``. Amplitudes ignore the phase, so a sharp
      cell in a slightly wrong place is not punished for being sharp, while a
      blurred forecast (high-frequency amplitude lost) is;
    - ``"log"``: :func:`spectral_loss` (L1 of log amplitudes). Its gradient
      ``1 / (A + 1e-6)`` is huge at the near-empty high frequencies of smooth
      rain fields; on the embedded radar it swamped the other terms and the
      network did not move away from persistence.

    The nowcaster applies the loss in its transformed space (log1p or dBR,
    :func:`downpour.nowcast.radar.rain_transform`), where heavy rain does not
    swamp the squared error. A term whose weight is 0 is not computed and is
    reported as 0.

    Parameters
    ----------
    pred, true
        ``(B, K, H, W)``: ``K`` forecast steps (1 for one-step training).
    mask
        Valid cells, bool, ``(B, 1, H, W)``, ``(1, 1, H, W)`` or ``(B, K, H, W)``.
    w_l1, w_spectral, w_mse, w_grad
        Weights (``nowcast.w_*``; docs/models.md#losses: 0.4, 0.3, 0.2, 0.1).
    spectral
        ``"amplitude"`` or ``"log"`` (``nowcast.spectral``).
    w_fss, fss_thresholds, fss_scales, fss_sharpness
        Weight (default 0: off), thresholds in the space of ``pred``,
        neighbourhood sizes and sigmoid width of the FSS term.

    Returns
    -------
    total
        Scalar loss to back-propagate.
    terms
        Unweighted ``l1, spectral, mse, grad, fss`` and ``total`` (not detached).

    Examples
    --------
    >>> pred, true = torch.tensor([[[[1.0, 3.0]]]]), torch.tensor([[[[2.0, 3.0]]]])
    >>> mask = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    >>> _, terms = nowcast_loss(pred, true, mask)
    >>> [round(float(terms[k]), 4) for k in ("l1", "mse", "grad", "spectral")]
    [0.5, 0.5, 1.0, 0.7071]
    """
    if spectral not in ("amplitude", "log"):
        raise ValueError(f"unknown spectral term {spectral!r}; valid: 'amplitude', 'log'")
    check_same_shape(pred, true, "pred and true")
    if mask.ndim == 4 and pred.ndim == 4 and mask.shape[1] == 1:
        mask = mask.expand(mask.shape[0], *pred.shape[1:])  # one mask for every step
    mask = as_mask(mask, pred)
    pred, true = as_float(pred), as_float(true)
    err = pred - true
    zero = zero_like(pred)

    def amplitude() -> torch.Tensor:
        m = mask.expand_as(pred)
        amp_p = torch.fft.rfft2(torch.where(m, pred, zero), norm="ortho").abs()
        amp_t = torch.fft.rfft2(torch.where(m, true, zero), norm="ortho").abs()
        per_item = (amp_p - amp_t).abs().flatten(1).mean(dim=1)
        return batch_mean(per_item, m.flatten(1).any(dim=1))

    parts: list[Term] = [
        ("l1", w_l1, lambda: masked_mean(err.abs(), mask)),
        (
            "spectral",
            w_spectral,
            amplitude if spectral == "amplitude" else lambda: spectral_loss(pred, true, mask),
        ),
        ("mse", w_mse, lambda: masked_mean(err.square(), mask)),
        ("grad", w_grad, lambda: gradient_loss(pred, true, mask, variant="signed")),
        (
            "fss",
            w_fss,
            lambda: fss_loss(pred, true, mask, fss_thresholds, fss_scales, sharpness=fss_sharpness),
        ),
    ]
    return weighted_sum(parts, zero=zero)
