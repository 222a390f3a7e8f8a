"""Reading a judge's verdict out of its reply, safely: the policy must not be able to write its own score.

Only the judge's reply is read (never the prompt or the graded text), and only after its last
``</think>`` when it reasons first. Every verdict-shaped match counts: when they disagree the reply is
``ambiguous`` (an error), not a guess at which one the judge meant — a judge that quotes a verdict
from the graded completion and then gives its own is caught this way. No match is a ``parse_error``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

NUMBER = r"[-+]?\d+(?:\.\d+)?"
DEFAULT_PATTERNS: tuple[str, ...] = (
    rf"\[\[\s*({NUMBER})\s*\]\]",  # [[7]]
    rf"(?i)\breward\s*:\s*\**\s*({NUMBER})",  # Reward: 0.8
)
_THINK_END = "</think>"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A parsed verdict: a value, or an error reason (``parse_error``, ``ambiguous``, ``out_of_range``)."""

    value: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@lru_cache(maxsize=64)
def compile_patterns(
    pattern: str | None, defaults: tuple[str, ...] = DEFAULT_PATTERNS
) -> tuple[re.Pattern[str], ...]:
    """The ``defaults`` (a grade's, unless a kind reads another verdict), or ``pattern`` (a regex with
    exactly one group) alone."""
    if pattern is None:
        return tuple(re.compile(p) for p in defaults)
    compiled = re.compile(pattern)
    if compiled.groups != 1:
        raise ValueError(f"a parser regex needs exactly one group, {pattern!r} has {compiled.groups}")
    return (compiled,)


def answer_part(reply: str) -> str:
    """The part of a reply that may hold the verdict: after the last ``</think>``, if any."""
    at = reply.rfind(_THINK_END)
    return reply if at < 0 else reply[at + len(_THINK_END) :]


def verdict_matches(reply: str, patterns: tuple[re.Pattern[str], ...]) -> list[str]:
    """Every verdict-shaped match in the answer part of ``reply`` (each pattern's first group), in the
    order they appear."""
    text = answer_part(reply)
    found = [(m.start(), m.group(1)) for compiled in patterns for m in compiled.finditer(text)]
    return [match for _, match in sorted(found, key=lambda f: f[0]) if match is not None]


def parse_verdict(
    reply: str, pattern: str | None = None, score_range: tuple[float, float] | None = None
) -> Verdict:
    """The verdict in ``reply``; with ``score_range`` (low, high) normalised to [0, 1]."""
    found: list[float] = []
    for match in verdict_matches(reply, compile_patterns(pattern)):
        try:
            value = float(match)
        except ValueError:
            continue
        if math.isfinite(value):
            found.append(value)
    if not found:
        return Verdict(None, "parse_error: no verdict in the reply")
    values = sorted(set(found))
    if len(values) > 1:
        shown = ", ".join(f"{v:g}" for v in found)
        return Verdict(None, f"ambiguous: the reply holds different verdicts ({shown})")
    return normalised(values[0], score_range)


def normalised(value: float, score_range: tuple[float, float] | None) -> Verdict:
    """``value`` mapped from ``score_range`` to [0, 1]; outside the range is an ``out_of_range`` error."""
    if score_range is None:
        return Verdict(value)
    low, high = score_range
    if not low <= value <= high:
        return Verdict(None, f"out_of_range: verdict {value:g} is outside [{low:g}, {high:g}]")
    return Verdict((value - low) / (high - low))
