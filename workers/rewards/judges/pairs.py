"""Which pairs of a group ``pairwise_judge`` compares, and what a group costs in requests.

- ``all``: every pair; a group of n costs n·(n-1) requests (each pair in both orders).
- ``ring:K``: a ring tournament for large groups. The members are put in a ring in a seeded order (the
  seed is the group's completions, so the same group always gets the same pairs) and each is compared
  with the K members after it: min(n·K, n·(n-1)/2) pairs, so 2·n·K requests while 2K < n (every member
  in 2K pairs, 4K comparisons) and all pairs once 2K >= n. The ring is connected, so a Bradley-Terry
  fit ranks the whole group.
"""

from __future__ import annotations

import itertools
import random

PAIRS_PATTERN = r"^(all|ring:[1-9][0-9]{0,2})$"
"""The values ``pairs`` takes: ``all`` or ``ring:K`` with K from 1 to 999."""


def pairs_of(size: int, plan: str, seed: str) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, i < j, of a group of ``size`` members that ``plan`` compares, each once."""
    if plan == "all":
        return list(itertools.combinations(range(size), 2))
    neighbours = int(plan.removeprefix("ring:"))
    ring = list(range(size))
    random.Random(seed).shuffle(ring)
    pairs = set()
    for at, member in enumerate(ring):
        for step in range(1, neighbours + 1):
            other = ring[(at + step) % size]
            if other != member:
                pairs.add((min(member, other), max(member, other)))
    return sorted(pairs)
