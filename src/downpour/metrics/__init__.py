"""Pure scoring: samples, verification, ensembles, quantiles, probabilities, extremes, spectra."""
