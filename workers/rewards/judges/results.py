"""What a server request comes to: a reply read into a value (or the reason it has none), and the
:class:`Outcome` of one unique request across its HTTP attempts and re-asks, turned into a ``Score``."""

from __future__ import annotations

from dataclasses import dataclass

from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.rewards.judges.cache import CachedResult

# Reasons of a reply that came back but could not be read: only these are asked again.
REASK_REASONS = ("parse_error", "ambiguous", "out_of_range")


@dataclass(frozen=True)
class Reading:
    """A reply read: its value in [0, 1] or ``error`` ("reason: detail"), with what the audit keeps."""

    value: float | None
    error: str | None
    raw: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated: bool = False

    @property
    def reason(self) -> str | None:
        return None if self.error is None else self.error.split(":", 1)[0]

    @property
    def reaskable(self) -> bool:
        return self.reason in REASK_REASONS


@dataclass(frozen=True)
class Outcome:
    """One unique request's end: the last reading (or failure), attempts over all re-asks, the replica."""

    value: float | None
    error: str | None
    raw: str | None
    http_attempts: int
    replica: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None

    def cached(self) -> CachedResult:
        assert self.value is not None
        return CachedResult(self.value, self.raw, self.prompt_tokens, self.completion_tokens, self.truncated)

    def score(self, template_hash: str | None, *, duplicate: bool = False) -> Score:
        """This request's score for one of its samples; a duplicate in the task made no request of its own."""
        meta = ScoreMeta(
            truncated=self.truncated,
            cache_hit=duplicate,
            http_attempts=0 if duplicate else self.http_attempts,
            replica=self.replica,
            prompt_tokens=None if duplicate else self.prompt_tokens,
            completion_tokens=None if duplicate else self.completion_tokens,
            template_hash=template_hash,
        )
        if self.ok:
            assert self.value is not None
            return Score.ok(self.value, raw=self.raw, meta=meta)
        error = self.error or "error: no value"
        if self.timed_out:
            return Score.timed_out(error, meta=meta)
        return Score.failed(error, raw=self.raw, meta=meta)


def cache_hit_score(result: CachedResult, template_hash: str | None) -> Score:
    """The score of a sample served from the cache: the cached value, no request made."""
    meta = ScoreMeta(truncated=result.truncated, cache_hit=True, http_attempts=0, template_hash=template_hash)
    return Score.ok(result.value, raw=result.raw, meta=meta)
