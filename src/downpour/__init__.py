"""downpour: deep-learning precipitation toolkit.

Conditional-VAE augmentation of extreme precipitation for SRDRN downscaling,
honest verification of extremes, and radar nowcasting. See DESIGN.md for the
shared picture and the README for the two commands.
"""

from downpour.core.errors import DownpourError

__all__ = ["DownpourError", "__version__"]
__version__ = "0.1.0"
