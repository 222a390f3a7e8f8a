"""The ``pairwise_judge`` reward: a chat judge compares the completions of a group two at a time, each pair
in both orders so that a preference for the first-shown (or second-shown) completion cancels.

Within one call, the samples are grouped by :attr:`Sample.group_key` (every group in a call is whole); the
requests of all the call's groups are asked at once (:meth:`ServerReward.ask`: cache, concurrency, the
deadline). A member's value is its win rate or its Bradley-Terry strength in its group
(:mod:`.preferences`); its audit ``raw`` holds its comparisons. Options, cost, parse rules and statuses:
``docs/rewards-judges.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, model_validator

from rewardq.wire.groups import group_indices
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.rewards.judges.chat import ChatReward
from rewardq.workers.rewards.judges.options import ChatOptions
from rewardq.workers.rewards.judges.pairs import PAIRS_PATTERN, pairs_of
from rewardq.workers.rewards.judges.preferences import Comparison, Tally, bradley_terry, tally
from rewardq.workers.rewards.judges.prompts import DEFAULT_PAIRWISE_TEMPLATE, check_template, safe_text
from rewardq.workers.rewards.judges.remote import Request
from rewardq.workers.rewards.judges.replies import PREFERENCES, PreferenceReader
from rewardq.workers.rewards.judges.results import REASK_REASONS, Outcome, Reading, group_meta

UNREAD_REASONS = (*REASK_REASONS, "refused")
"""Reasons of a reply that came back without a verdict: the comparison counts as a tie. Any other failure
(HTTP, connection, timeout) leaves the group without a value."""


class PairwiseJudgeOptions(ChatOptions):
    """Options of ``pairwise_judge``: those of every chat judge, which pairs, and how they are aggregated."""

    template: Annotated[str, Field(min_length=1)] = DEFAULT_PAIRWISE_TEMPLATE
    """The user message: ``{completion_a}`` and ``{completion_b}`` are the pair in the order asked;
    ``{prompt}``, ``{reference}`` and ``{column}`` come from the group's first sample."""
    pairs: Annotated[str, Field(pattern=PAIRS_PATTERN)] = "all"
    """``all`` (every pair) or ``ring:K`` (each member against K ring neighbours), see :mod:`.pairs`."""
    aggregate: Literal["winrate", "bradley_terry"] = "winrate"
    """``winrate``: wins plus half the ties over the comparisons, in [0, 1]; ``bradley_terry``: the member's
    log-strength fitted over the group's comparisons, centred on the group's mean."""
    bt_alpha: Annotated[float, Field(gt=0, le=100)] = 0.1
    """With ``bradley_terry``: choix's regularisation (pseudo-comparisons between every pair)."""

    @model_validator(mode="after")
    def _pairwise(self) -> PairwiseJudgeOptions:
        fields = set(check_template(self.template))
        if not {"completion_a", "completion_b"} <= fields or "completion" in fields:
            raise ValueError("`template` must name {completion_a} and {completion_b} (not {completion})")
        choice = self.structured.choice if self.structured is not None else None
        if choice is not None and {c.lower() for c in choice} - set(PREFERENCES):
            raise ValueError("`structured.choice` may only list A, B and tie")
        return self


@dataclass(frozen=True)
class GroupPlan:
    """A group's members (their indices in the call) and the request of each comparison."""

    members: list[int]
    comparisons: list[tuple[int, int, str]]
    """(shown as A, shown as B, request key), A and B members' positions in the group."""


class PairwiseJudgeReward(ChatReward):
    """Each member's standing in its group, from a chat judge's verdicts on pairs of completions."""

    kind = "pairwise_judge"
    sees = "group"
    Options = PairwiseJudgeOptions
    options: PairwiseJudgeOptions

    def __init__(self, name: str, options: PairwiseJudgeOptions) -> None:
        super().__init__(name, options)
        self._reader = PreferenceReader(options.parser, options.structured_output())

    def read(self, body: Any, request: Request) -> Reading:
        return self._reader.read(body)

    def reader_identity(self) -> dict[str, Any]:
        structured = self._reader.structured
        return {"parser": self._reader.parser, "field": structured.field if structured else None}

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        scores: list[Score | None] = [None] * len(samples)
        plans: list[GroupPlan] = []
        requests: list[Request] = []
        for members in group_indices([s.group_key for s in samples]):
            plan = self._plan(samples, members, requests)
            if isinstance(plan, Score):
                for i in members:
                    scores[i] = plan
            else:
                plans.append(plan)
        outcomes = self.ask(requests) if requests else {}
        for plan in plans:
            for i, score in zip(plan.members, self._group_scores(plan, outcomes), strict=True):
                scores[i] = score
        return [s if s is not None else Score.failed("internal error: no score") for s in scores]

    def _plan(
        self, samples: Sequence[Sample], members: list[int], requests: list[Request]
    ) -> GroupPlan | Score:
        """One group's comparisons, their requests added to ``requests``; or the Score of every member."""
        if len(members) == 1:
            return Score.unscorable("pairwise_judge: a group of one sample has nothing to compare with")
        texts = [samples[i].completion_text for i in members]
        seed = hashlib.sha256(orjson.dumps(texts)).hexdigest()
        safe = [safe_text(t) for t in texts]
        comparisons = []
        for i, j in pairs_of(len(members), self.options.pairs, seed):
            for a, b in ((i, j), (j, i)):
                body = self.chat(samples[members[0]], {"completion_a": safe[a], "completion_b": safe[b]})
                if isinstance(body, Score):
                    return body
                request = self.request(body)
                requests.append(request)
                comparisons.append((a, b, request.key))
        return GroupPlan(members, comparisons)

    def _group_scores(self, plan: GroupPlan, outcomes: dict[str, Outcome]) -> list[Score]:
        """Every member's score from its group's outcomes; a group with a failed request has none."""
        asked = [outcomes[key] for _, _, key in plan.comparisons]
        failed = [o for o in asked if not o.ok and (o.error or "").split(":", 1)[0] not in UNREAD_REASONS]
        size = len(plan.members)
        metas = [
            group_meta(
                [o for (a, b, _), o in zip(plan.comparisons, asked, strict=True) if m in (a, b)],
                self.template_hash,
            )
            for m in range(size)
        ]
        if failed:
            error = f"{failed[0].error} ({len(failed)} of {len(asked)} requests of the group failed)"
            timed_out = any(o.timed_out for o in failed)
            return [
                Score.timed_out(error, meta=m) if timed_out else Score.failed(error, meta=m) for m in metas
            ]
        verdicts = [
            Comparison(a, b, o.value if isinstance(o.value, float) else None)
            for (a, b, _), o in zip(plan.comparisons, asked, strict=True)
        ]
        tallies, wins = tally(size, verdicts)
        if self.options.aggregate == "winrate":
            return [_scored(t.winrate, t, metas[t.member]) for t in tallies]
        try:
            strengths = bradley_terry(wins, self.options.bt_alpha)
        except (RuntimeError, ValueError) as e:  # choix did not converge: say so, for the whole group
            return [Score.failed(f"bradley_terry: {e}", meta=m) for m in metas]
        return [
            _scored(s, t, metas[t.member], strength=round(s, 6))
            for s, t in zip(strengths, tallies, strict=True)
        ]


def _scored(value: float, member: Tally, meta: ScoreMeta, **extra: Any) -> Score:
    return Score.ok(value, raw=orjson.dumps(member.detail(**extra)).decode(), meta=meta)
