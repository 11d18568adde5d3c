"""Loss terms, one module per family, and one weighted-sum combiner.

- :mod:`~downpour.losses.masked`: masked means and pooling (the conventions);
- :mod:`~downpour.losses.reconstruction`: intensity-weighted, multi-scale,
  mass, gradient, focal and hurdle terms;
- :mod:`~downpour.losses.spectral`: Fourier-amplitude term;
- :mod:`~downpour.losses.fractions`: the fractions skill score as a loss;
- :mod:`~downpour.losses.latent`: KL with free bits, wet-fraction target;
- :mod:`~downpour.losses.pinball`: the pinball loss of quantile heads;
- :mod:`~downpour.losses.ensemble`: almost-fair CRPS per cell, on block means
  and on spectra; the ensemble mean for deterministic regularisers;
- :mod:`~downpour.losses.combine`: :func:`weighted_sum` of a table of terms;
- :mod:`~downpour.losses.cvae`: the cVAE objective (ELBO);
- :mod:`~downpour.losses.generator`: the generator's ensemble objective.

The nowcaster's loss lives with the nowcaster (:mod:`downpour.nowcast.loss`).
"""

from downpour.losses.combine import Term, weighted_sum
from downpour.losses.cvae import cvae_loss
from downpour.losses.ensemble import almost_fair_crps, ensemble_mean, pooled_crps, spectral_crps
from downpour.losses.fractions import fss_loss
from downpour.losses.generator import ensemble_loss
from downpour.losses.latent import kl_divergence, sparsity
from downpour.losses.pinball import pinball_loss, pinball_name
from downpour.losses.reconstruction import (
    GRAD_VARIANTS,
    extreme_focal,
    gradient_loss,
    hurdle_loss,
    mass_conservation,
    multiscale_reconstruction,
    weighted_reconstruction,
)
from downpour.losses.spectral import spectral_loss

__all__ = [
    "GRAD_VARIANTS",
    "Term",
    "almost_fair_crps",
    "cvae_loss",
    "ensemble_loss",
    "fss_loss",
    "ensemble_mean",
    "extreme_focal",
    "gradient_loss",
    "hurdle_loss",
    "kl_divergence",
    "mass_conservation",
    "multiscale_reconstruction",
    "pinball_loss",
    "pinball_name",
    "pooled_crps",
    "sparsity",
    "spectral_crps",
    "spectral_loss",
    "weighted_reconstruction",
    "weighted_sum",
]
