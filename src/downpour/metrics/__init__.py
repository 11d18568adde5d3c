"""Pure scoring: sample quality, verification, ensembles, extremes, spectra (docs/metrics.md)."""
