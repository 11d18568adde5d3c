"""The shared core: errors, registries, atomic files, the run directory, checkpoints, periods.

Nothing here imports from any other room of the package.
"""

from downpour.core.errors import DownpourError
from downpour.core.registry import Registry
from downpour.core.rundir import RunDir

__all__ = ["DownpourError", "Registry", "RunDir"]
