"""Figures, tables, the self-contained HTML report and side-by-side comparisons of runs."""
