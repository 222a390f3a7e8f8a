"""Splitting a batch into chunks (one task per chunk and reward), keeping groups whole where it must.

A batch of pointwise rewards is cut every ``chunk_size`` samples. When any of its rewards scores whole
groups (:mod:`rewardq.wire.groups`), a cut may fall only where no group spans it: a chunk then runs past
``chunk_size`` to the next such place. A group of more than ``MAX_GROUP_SIZE`` samples is refused, as is
a batch whose groups interleave so much that a chunk would run more than :data:`MAX_OVERRUN` samples past
``chunk_size`` (each group's samples one after the other, as TRL, ms-swift and verl order them, never
does: a chunk then runs at most ``MAX_GROUP_SIZE - 1`` past).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardq.wire.errors import InvalidInputError, Problem
from rewardq.wire.groups import MAX_GROUP_SIZE, group_key, oversize_problem
from rewardq.wire.settings import MAX_CHUNK_SIZE

MAX_OVERRUN = 4 * MAX_GROUP_SIZE
"""The most samples a chunk may run past ``chunk_size`` to keep interleaved groups whole."""

Span = tuple[int, int]


def chunk_spans(count: int, size: int) -> list[Span]:
    """``[start, end)`` of each chunk of a batch of pointwise rewards: every ``size`` samples."""
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def sample_group_keys(samples: Sequence[dict[str, Any]]) -> list[str]:
    """Each sample's group key (samples in their wire form)."""
    return [group_key(s.get("group"), s.get("prompt")) for s in samples]


def group_spans(keys: Sequence[str], size: int, *, lines: Sequence[int] | None = None) -> list[Span]:
    """``[start, end)`` of each chunk of a batch whose samples have group ``keys`` (see :class:`Extents`)."""
    extents = Extents()
    for index, key in enumerate(keys):
        extents.add(key, None if lines is None else lines[index])
    return extents.spans(size)


@dataclass
class _Extent:
    first: int
    last: int
    count: int
    line: int | None
    file: str | None


class Extents:
    """Where each group of a batch starts and ends, fed one sample's key at a time (a file is read once,
    in memory that grows with its groups, not its samples), and the chunks that keep them whole."""

    def __init__(self) -> None:
        self.count = 0
        self._groups: dict[str, _Extent] = {}

    def add(self, key: str, line: int | None = None, file: str | None = None) -> None:
        """The next sample's group key, and where it is (for problems)."""
        extent = self._groups.get(key)
        if extent is None:
            self._groups[key] = _Extent(self.count, self.count, 1, line, file)
        else:
            extent.last, extent.count = self.count, extent.count + 1
        self.count += 1

    def spans(self, size: int) -> list[Span]:
        """``[start, end)`` of each chunk: at least ``size`` samples (the last may hold fewer), cut only
        where no group spans the cut. Raises InvalidInputError for a group over ``MAX_GROUP_SIZE`` or a
        chunk over ``size + MAX_OVERRUN``."""
        oversize = [(key, e) for key, e in self._groups.items() if e.count > MAX_GROUP_SIZE]
        if oversize:
            raise InvalidInputError([_oversize(key, e) for key, e in oversize])
        blocked = _merged(sorted((e.first, e.last) for e in self._groups.values() if e.last > e.first))
        starts = [first for first, _ in blocked]
        limit = min(size + MAX_OVERRUN, MAX_CHUNK_SIZE)
        spans: list[Span] = []
        start = 0
        while start < self.count:
            cut = min(start + size, self.count)
            at = bisect_left(starts, cut) - 1  # the block of groups that may span the cut
            if at >= 0 and blocked[at][0] < cut <= blocked[at][1]:
                cut = blocked[at][1] + 1
            if cut - start > limit:
                raise InvalidInputError([Problem("group", _interleaved(start, limit))])
            spans.append((start, cut))
            start = cut
        return spans


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping ``(first, last)`` intervals (sorted) merged: a cut ``p`` with first < p <= last
    would split a group."""
    merged: list[tuple[int, int]] = []
    for first, last in intervals:
        if merged and first < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _interleaved(start: int, limit: int) -> str:
    return (
        f"groups interleave from sample {start} on: no chunk boundary within {limit} samples keeps every "
        "group whole; put each group's samples one after another"
    )


def _oversize(key: str, extent: _Extent) -> Problem:
    problem = oversize_problem(key, extent.count)
    if extent.line is not None:
        return Problem("group", problem, line=extent.line, file=extent.file)
    return Problem("group", problem, index=extent.first)
