"""Metrics: sample quality (DESIGN.md §8.1), verification (§8.2), extremes and spectra."""
