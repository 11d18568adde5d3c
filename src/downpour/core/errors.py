"""User-facing errors.

Every problem caused by the user's input (files, variables, config keys) is
raised as :class:`DownpourError` with one message that names the file,
variable or key and says what to do. The CLI prints the message without a
traceback and exits with status 2.
"""

from __future__ import annotations

__all__ = ["DownpourError"]


class DownpourError(Exception):
    """An input problem the user can fix; the message says how."""
