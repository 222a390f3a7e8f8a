"""What a server request comes to: a reply read into a value (or the reason it has none), and the
:class:`Outcome` of one unique request across its HTTP attempts and re-asks, turned into a ``Score`` (or,
for a member of a group, what the audit shows of the requests it took part in)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.rewards.judges.cache import CachedResult, Value

# Reasons of a reply that came back but could not be read: only these are asked again.
REASK_REASONS = ("parse_error", "ambiguous", "out_of_range")


@dataclass(frozen=True)
class Reading:
    """A reply read: its value (:data:`Value`) or ``error`` ("reason: detail"), with what the audit keeps."""

    value: Value | None
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
    """One unique request's end: the last reading (or failure), attempts over all re-asks, the replica;
    ``from_cache`` when the result cache answered and no request was made."""

    value: Value | None
    error: str | None
    raw: str | None
    http_attempts: int
    replica: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated: bool = False
    timed_out: bool = False
    from_cache: bool = False

    @classmethod
    def cached_as(cls, result: CachedResult) -> Outcome:
        """The outcome of a request the cache answered."""
        return cls(
            result.value,
            None,
            result.raw,
            0,
            None,
            result.prompt_tokens,
            result.completion_tokens,
            result.truncated,
            from_cache=True,
        )

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None

    def cached(self) -> CachedResult:
        assert self.value is not None
        return CachedResult(self.value, self.raw, self.prompt_tokens, self.completion_tokens, self.truncated)

    def score(self, template_hash: str | None, *, duplicate: bool = False) -> Score:
        """This request's score for one of its samples; a duplicate in the task made no request of its own,
        and neither did a sample the cache answered."""
        reused = duplicate or self.from_cache
        meta = ScoreMeta(
            truncated=self.truncated,
            cache_hit=reused,
            http_attempts=0 if reused else self.http_attempts,
            replica=self.replica,
            prompt_tokens=None if reused else self.prompt_tokens,
            completion_tokens=None if reused else self.completion_tokens,
            template_hash=template_hash,
        )
        if self.ok:
            assert self.value is not None and not isinstance(self.value, tuple), "a per-sample request"
            return Score.ok(self.value, raw=self.raw, meta=meta)
        error = self.error or "error: no value"
        if self.timed_out:
            return Score.timed_out(error, meta=meta)
        return Score.failed(error, raw=self.raw, meta=meta)


def group_meta(mine: Sequence[Outcome], template_hash: str | None) -> ScoreMeta:
    """What the audit shows of a group member's requests (``pairwise_judge``, ``group_judge``): the HTTP
    attempts and tokens of those it took part in (a request about several members counts for each), a
    cache hit when the cache answered all of them."""
    asked = [o for o in mine if not o.from_cache]
    prompt = [o.prompt_tokens for o in asked if o.prompt_tokens is not None]
    completion = [o.completion_tokens for o in asked if o.completion_tokens is not None]
    return ScoreMeta(
        truncated=any(o.truncated for o in mine),
        cache_hit=not asked,
        http_attempts=sum(o.http_attempts for o in asked),
        replica=next((o.replica for o in asked if o.replica is not None), None),
        prompt_tokens=sum(prompt) if prompt else None,
        completion_tokens=sum(completion) if completion else None,
        template_hash=template_hash,
    )
