"""Token-budget batching: pack samples of known token lengths into forward passes (or ``generate`` calls).

Samples are sorted by length (longest first, so a pass that would run out of memory runs first) and
packed greedily: a pass holds as many rows as fit ``rows * (longest + extra) <= token_budget``, which is
what a padded batch costs (``extra``: the tokens each row grows by, a judge's ``max_new_tokens``), and
at most ``max_rows`` rows. A sample longer than the budget gets a pass of its own. :func:`run_packed`
runs a forward function per pass and puts the results back in input order. Used by the classifier
(``reward_model``) and by generation (``local_judge``). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Packing:
    """Forward passes as lists of input indices, and what they cost in tokens."""

    passes: list[list[int]]
    real_tokens: int
    padded_tokens: int

    @property
    def efficiency(self) -> float:
        """Real tokens over padded tokens (1.0 when nothing is padded, or nothing is packed)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def pack(
    lengths: Sequence[int], token_budget: int | None, *, max_rows: int | None = None, extra: int = 0
) -> Packing:
    """Group indices of ``lengths`` into passes of at most ``token_budget`` padded tokens (rows * (longest
    + ``extra``)) and ``max_rows`` rows each; None: no such bound."""
    if token_budget is not None and token_budget < 1:
        raise ValueError(f"token_budget must be at least 1, got {token_budget}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    passes: list[list[int]] = []
    padded = 0
    current: list[int] = []
    width = 0
    for i in order:
        over_budget = token_budget is not None and (len(current) + 1) * width > token_budget
        if current and (len(current) == max_rows or over_budget):
            passes.append(current)
            padded += len(current) * width
            current = []
        if not current:
            width = max(lengths[i] + extra, 1)  # sorted: the first row is the longest
        current.append(i)
    if current:
        passes.append(current)
        padded += len(current) * width
    return Packing(passes, sum(lengths) + extra * len(lengths), padded)


def run_packed(items: Sequence[T], packing: Packing, forward: Callable[[list[T]], Sequence[R]]) -> list[R]:
    """Call ``forward`` once per pass of ``packing`` over ``items``; results come back in input order."""
    results: dict[int, R] = {}
    for indices in packing.passes:
        out = forward([items[i] for i in indices])
        if len(out) != len(indices):
            raise RuntimeError(f"a forward pass returned {len(out)} results for {len(indices)} inputs")
        results.update(zip(indices, out, strict=True))
    if len(results) != len(items):
        raise ValueError(f"the packing covers {len(results)} of {len(items)} inputs")
    return [results[i] for i in range(len(items))]
