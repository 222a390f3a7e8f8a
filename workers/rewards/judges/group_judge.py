"""The ``group_judge`` reward (listwise): a chat judge sees the whole group at once and grades each
completion. Each request shows the group in its own seeded order (``shuffles`` requests per group, each a
rotation of a seeded shuffle, mapped back to the members), so that where a completion stands in the list
does not decide its grade.

Within one call, the samples are grouped by :attr:`Sample.group_key` (every group in a call is whole); the
requests of all the call's groups are asked at once (:meth:`ServerReward.ask`: cache, concurrency, the
deadline). A reply must grade every completion shown, on ``score_range``, or the whole group fails with the
reason. Options, parse rules and statuses: ``docs/rewards-judges.md``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import Field, model_validator

from rewardq.wire.groups import group_indices
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges.chat import ChatReward
from rewardq.workers.rewards.judges.options import ChatOptions, check_range, default_scale
from rewardq.workers.rewards.judges.prompts import DEFAULT_GROUP_TEMPLATE, check_template, numbered_responses
from rewardq.workers.rewards.judges.remote import Request
from rewardq.workers.rewards.judges.replies import GradesReader
from rewardq.workers.rewards.judges.results import Outcome, Reading, group_meta

RAW_REPLIES = 4
RAW_REPLY = 1000
"""A member's audit detail keeps the first RAW_REPLIES replies of its group, RAW_REPLY characters each."""


class GroupJudgeOptions(ChatOptions):
    """Options of ``group_judge``: those of every chat judge, the grades' scale, and the shuffled orders."""

    template: Annotated[str, Field(min_length=1)] = DEFAULT_GROUP_TEMPLATE
    """The user message: ``{completions}`` is the group in the request's order, each between
    ``[RESPONSE k]`` and ``[/RESPONSE k]``; ``{count}`` its size; ``{prompt}``, ``{reference}`` and
    ``{column}`` come from the group's first sample."""
    score_range: tuple[float, float] | None = None
    """The grades' scale, mapped to [0, 1]; ``[0, 10]`` with the default template, else none."""
    shuffles: Annotated[int, Field(ge=1, le=16)] = 1
    """Requests per group, each showing the completions in another order; a member's value is the mean of
    its grades."""
    shuffle_seed: int = 0
    """With the group's completions, decides each request's order (the same group gets the same orders)."""

    @model_validator(mode="before")
    @classmethod
    def _default_scale(cls, data: Any) -> Any:
        return default_scale(data, set())

    @model_validator(mode="after")
    def _listwise(self) -> GroupJudgeOptions:
        fields = set(check_template(self.template))
        if "completions" not in fields or {"completion", "completion_a", "completion_b"} & fields:
            raise ValueError("`template` must name {completions} (not {completion})")
        check_range(self.score_range)
        return self


@dataclass(frozen=True)
class Listing:
    """One request of a group: the members in the order shown (positions in the group) and its key."""

    order: list[int]
    key: str


class GroupJudgeReward(ChatReward):
    """Each member's grade from a chat judge that sees its whole group."""

    kind = "group_judge"
    sees = "group"
    Options = GroupJudgeOptions
    options: GroupJudgeOptions

    def __init__(self, name: str, options: GroupJudgeOptions) -> None:
        super().__init__(name, options)
        self._reader = GradesReader(options.parser, options.structured_output(), options.score_range)

    def read(self, body: Any, request: Request) -> Reading:
        return self._reader.read(body, request.completions)

    def reader_identity(self) -> dict[str, Any]:
        structured = self._reader.structured
        field = structured.field if structured else None
        return {"parser": self._reader.parser, "field": field, "score_range": self._reader.score_range}

    def orders(self, texts: Sequence[str]) -> list[list[int]]:
        """The order each request of a group shows its members in: a seeded shuffle (``shuffle_seed`` and
        the group's completions, so reproducible), rotated by one place per request, so that with
        ``shuffles`` = the group's size each completion is shown once at every place (past that, another
        shuffle)."""
        digest = hashlib.sha256(orjson.dumps(list(texts))).hexdigest()
        size = len(texts)
        orders = []
        for k in range(self.options.shuffles):
            shuffled = random.Random(f"{self.options.shuffle_seed}:{k // size}:{digest}").sample(
                range(size), size
            )
            turn = k % size
            orders.append(shuffled[turn:] + shuffled[:turn])
        return orders

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        scores: list[Score | None] = [None] * len(samples)
        groups: list[tuple[list[int], list[Listing]]] = []
        requests: list[Request] = []
        for members in group_indices([s.group_key for s in samples]):
            texts = [samples[i].completion_text for i in members]
            listings = []
            for order in self.orders(texts):
                filled = {
                    "completions": numbered_responses([texts[m] for m in order]),
                    "count": str(len(order)),
                }
                body = self.chat(samples[members[0]], filled)
                if isinstance(body, Score):
                    break
                request = self.request(body, completions=len(order))
                requests.append(request)
                listings.append(Listing(order, request.key))
            if isinstance(body, Score):
                for i in members:
                    scores[i] = body
            else:
                groups.append((members, listings))
        outcomes = self.ask(requests) if requests else {}
        for members, listings in groups:
            for i, score in zip(members, self._group_scores(len(members), listings, outcomes), strict=True):
                scores[i] = score
        return [s if s is not None else Score.failed("internal error: no score") for s in scores]

    def _group_scores(self, size: int, listings: list[Listing], outcomes: dict[str, Outcome]) -> list[Score]:
        """Every member's score: the mean of its grades, mapped back from each request's order; a group with
        a request that gave no grades has none."""
        asked = [outcomes[listing.key] for listing in listings]
        meta = group_meta(asked, self.template_hash)
        failed = [o for o in asked if not o.ok]
        if failed:
            error = f"{failed[0].error} ({len(failed)} of {len(asked)} requests of the group failed)"
            if any(o.timed_out for o in failed):
                return [Score.timed_out(error, meta=meta)] * size
            return [Score.failed(error, raw=failed[0].raw, meta=meta)] * size
        grades: list[list[float]] = [[] for _ in range(size)]
        shown_at: list[list[int]] = [[] for _ in range(size)]
        for listing, outcome in zip(listings, asked, strict=True):
            assert isinstance(outcome.value, tuple)
            for position, (member, grade) in enumerate(
                zip(listing.order, outcome.value, strict=True), start=1
            ):
                grades[member].append(grade)
                shown_at[member].append(position)
        replies = [(o.raw or "")[:RAW_REPLY] for o in asked[:RAW_REPLIES]]
        return [
            Score.ok(
                sum(grades[m]) / len(grades[m]),
                raw=orjson.dumps(
                    {"member": m, "shown_at": shown_at[m], "grades": grades[m], "replies": replies}
                ).decode(),
                meta=meta,
            )
            for m in range(size)
        ]
