"""One weighted-sum combiner of named loss terms that returns every term for logging.

A loss is a table of ``(name, weight, compute)`` rows: the total starts from
an optional unweighted ``base`` term and adds ``weight · compute()`` row by
row in table order (the order fixes the floating-point sum, so a table gives
the same total whatever else changes). A row whose weight is 0 is not
computed and is reported as 0.

Examples
--------
>>> a, b = torch.tensor(2.0), torch.tensor(5.0)
>>> total, terms = weighted_sum([("a", 0.5, lambda: a), ("b", 0.0, lambda: b)])
>>> float(total), {k: float(v) for k, v in terms.items()}
(1.0, {'a': 2.0, 'b': 0.0, 'total': 1.0})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["Term", "weighted_sum"]

#: One row of a loss table: name, weight and a thunk computing the unweighted term.
Term = tuple[str, float, Callable[[], torch.Tensor]]


def weighted_sum(
    table: Sequence[Term],
    *,
    base: tuple[str, torch.Tensor] | None = None,
    zero: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return ``base + Σ weight · term`` and every (unweighted) term by name.

    Parameters
    ----------
    table
        Rows ``(name, weight, compute)``; ``compute()`` returns a scalar tensor.
    base
        ``(name, value)`` of a term that enters the total with weight 1 and
        starts the sum; ``None``: the sum starts from ``zero``.
    zero
        The scalar reported for (and, without ``base``, summed from) a row of
        weight 0; default a float32 zero on the CPU.

    Returns
    -------
    total
        Scalar tensor to back-propagate.
    terms
        ``{name: term}`` for the base and every row (rows of weight 0 as
        ``zero``), plus ``"total"``; not detached.
    """
    if zero is None:
        zero = torch.zeros(())
    terms: dict[str, torch.Tensor] = {}
    if base is not None:
        total = base[1]
        terms[base[0]] = base[1]
    else:
        total = zero
    for name, weight, compute in table:
        terms[name] = compute() if weight != 0 else zero
        if weight != 0:
            total = total + weight * terms[name]
    terms["total"] = total
    return total, terms
