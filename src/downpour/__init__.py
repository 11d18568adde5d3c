"""downpour: deep-learning precipitation toolkit.

Conditional-VAE augmentation of extreme precipitation for SRDRN downscaling,
honest verification of extremes, and radar nowcasting. The design (architecture,
data contract, layouts, metric definitions, presets) is in the repository's
``docs/``; the README has the two commands.
"""

from downpour.core.errors import DownpourError

__all__ = ["DownpourError", "__version__"]
__version__ = "0.1.0"
