"""From a group's comparisons to each member's value: the tally (wins, ties, losses, and the verdicts that
count as ties), the win rate, and Bradley-Terry strengths fitted with ``choix``.

A comparison is one request: the member shown as A, the member shown as B, and the verdict's value (1.0: A
won, 0.0: B won, 0.5: tie; None: no verdict could be read, a tie). A pair is *inconsistent* when its two
orders name different winners (each order's A won, or each order's B won): the judge followed the position,
not the completions, and both comparisons count as ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RAW_COMPARISONS = 64
"""The most comparisons a member's audit detail lists; the counts cover them all."""
_VERDICTS = {1.0: "A", 0.0: "B", 0.5: "tie", None: "?"}


@dataclass(frozen=True)
class Comparison:
    """One request's verdict: ``first`` (shown as A) against ``second`` (shown as B), members of the group."""

    first: int
    second: int
    value: float | None


@dataclass
class Tally:
    """One member's comparisons, counted after the tie rules."""

    member: int
    wins: int = 0
    ties: int = 0
    losses: int = 0
    unparseable: int = 0
    inconsistent: int = 0
    listed: list[tuple[int, str, str]] = field(default_factory=list)
    """(opponent, the position this member was shown in, the judge's verdict), up to RAW_COMPARISONS."""

    @property
    def count(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def winrate(self) -> float:
        """Wins plus half the ties, over the comparisons."""
        return (self.wins + 0.5 * self.ties) / self.count

    def detail(self, **extra: Any) -> dict[str, Any]:
        """The audit's bounded form of this member's comparisons."""
        shown = {"member": self.member, "comparisons": [list(c) for c in self.listed]}
        if self.count > len(self.listed):
            shown["more"] = self.count - len(self.listed)
        counts = {"wins": self.wins, "ties": self.ties, "losses": self.losses}
        return shown | counts | {"unparseable": self.unparseable, "inconsistent": self.inconsistent} | extra


def tally(size: int, comparisons: Sequence[Comparison]) -> tuple[list[Tally], list[list[float]]]:
    """Each member's tally, and the group's win matrix (``wins[i][j]``: points i took from j, a tie half)."""
    tallies = [Tally(m) for m in range(size)]
    wins = [[0.0] * size for _ in range(size)]
    verdicts = {(c.first, c.second): c.value for c in comparisons}
    for c in comparisons:
        reverse = verdicts.get((c.second, c.first))
        flipped = c.value is not None and reverse is not None and c.value == reverse and c.value != 0.5
        points = 0.5 if c.value is None or flipped else c.value  # the points of the member shown first
        for member, other, position, got in (
            (c.first, c.second, "A", points),
            (c.second, c.first, "B", 1 - points),
        ):
            t = tallies[member]
            if got == 1.0:
                t.wins += 1
            elif got == 0.0:
                t.losses += 1
            else:
                t.ties += 1
            t.unparseable += c.value is None
            t.inconsistent += flipped
            wins[member][other] += got
            if len(t.listed) < RAW_COMPARISONS:
                t.listed.append((other, position, _VERDICTS[c.value]))
    return tallies, wins


def bradley_terry(wins: list[list[float]], alpha: float) -> list[float]:
    """Bradley-Terry strengths (log scale) fitted to a win matrix by choix's iterative LSR, centred on the
    group's mean. ``alpha`` is choix's regularisation: pseudo-comparisons between every pair, so that a
    member who won (or lost) everything keeps a finite strength."""
    import choix
    import numpy as np

    strengths = choix.ilsr_pairwise_dense(np.asarray(wins, dtype=float), alpha=alpha)
    return [float(s) for s in strengths - strengths.mean()]
