"""``pairwise_judge`` against a fake judge with a hidden quality per completion and a position bias: the
ranking within each group is the hidden one because each pair is judged in both orders (one order alone
gets it wrong); strict verdicts; unparseable and inconsistent verdicts counted; Bradley-Terry centred per
group; the pair plans' cost; failures and deadlines per group."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges.options import StructuredOutput
from rewardq.workers.rewards.judges.pairs import pairs_of
from rewardq.workers.rewards.judges.pairwise import PairwiseJudgeOptions, PairwiseJudgeReward
from rewardq.workers.rewards.judges.replies import PreferenceReader
from tests.fake_openai import FakeOpenAI, Reply, Request, biased_pairwise, completion, from_text, shown

MakeReward = Callable[..., Any]
URL = "http://127.0.0.1:8000/v1"
# Completions named by their hidden quality; the judge prefers A unless B is better by more than MARGIN.
MARGIN = 2.5
QUALITY = {f"answer of quality {q}": float(q) for q in range(8)}


def quality(text: str) -> float:
    return QUALITY[text]


def group(name: str, qualities: Sequence[int], prompt: str = "Which is right?") -> list[Sample]:
    return [Sample(prompt=prompt, completion=f"answer of quality {q}", group=name) for q in qualities]


def ranking(values: Sequence[float | None]) -> list[int]:
    """Positions from worst to best, requiring strictly different values."""
    assert all(v is not None for v in values) and len(set(values)) == len(values), values
    return sorted(range(len(values)), key=lambda i: values[i])  # type: ignore[arg-type, return-value]


def one_order_winrates(scores: Sequence[Score]) -> list[float]:
    """Each member's win rate had the judge been asked each pair once, the lower member shown first:
    read from the comparisons its audit detail lists."""
    rates = []
    for score in scores:
        detail = orjson.loads(score.raw or "")
        me, points, count = detail["member"], 0.0, 0
        for opponent, position, verdict in detail["comparisons"]:
            if (position == "A") != (me < opponent):
                continue  # the other order
            count += 1
            points += 0.5 if verdict == "tie" else float(verdict == position)
        rates.append(points / count)
    return rates


def test_the_ranking_is_the_hidden_one_and_the_position_bias_cancels(make_reward: MakeReward) -> None:
    ascending, shuffled = [0, 1, 2, 3, 4, 5], [3, 0, 5, 1, 4, 2]
    samples = group("g1", ascending) + group("g2", shuffled)
    with FakeOpenAI(biased_pairwise(quality, MARGIN)) as server:
        scores = make_reward(PairwiseJudgeReward, server).score(samples)
    # Every pair in both orders; the two groups hold the same completions, so their requests are sent once.
    assert len(server.chat_requests) == 6 * 5
    assert [s.status for s in scores] == ["ok"] * 12
    for members, qualities in ((scores[:6], ascending), (scores[6:], shuffled)):
        values = [s.value for s in members]
        assert ranking(values) == ranking([float(q) for q in qualities])
        assert all(0.0 <= v <= 1.0 for v in values if v is not None)
        # Close pairs got opposite verdicts in the two orders: counted, and scored as ties.
        assert sum(orjson.loads(s.raw or "")["inconsistent"] for s in members) > 0
    # Judged in one order only, the lower member shown first, the worse of each close pair wins: the
    # ranking of the first group collapses.
    one_order = one_order_winrates(scores[:6])
    assert len(set(one_order)) < 6 and ranking([float(q) for q in ascending]) != sorted(
        range(6), key=lambda i: (one_order[i], -i)
    )


def test_bradley_terry_ranks_the_group_and_is_centred_per_group(make_reward: MakeReward) -> None:
    samples = group("g1", [2, 0, 1, 3]) + group("g2", [7, 4, 6, 5, 3])
    with FakeOpenAI(biased_pairwise(quality, margin=1.5)) as server:  # neighbours in quality are close
        scores = make_reward(PairwiseJudgeReward, server, aggregate="bradley_terry").score(samples)
    for members, qualities in ((scores[:4], [2, 0, 1, 3]), (scores[4:], [7, 4, 6, 5, 3])):
        values = [s.value for s in members]
        assert ranking(values) == ranking([float(q) for q in qualities])
        assert sum(v for v in values if v is not None) == pytest.approx(0.0, abs=1e-9)
        assert [orjson.loads(s.raw or "")["strength"] for s in members] == pytest.approx(values, abs=1e-6)


def test_verdicts_are_read_strictly() -> None:
    free = PreferenceReader(None, None)
    assert [free.verdict(t)[0] for t in ("So [[A]]", "[[b]]", "[[ tie ]]", "<think>[[B]]</think>[[A]]")] == [
        1.0,
        0.0,
        0.5,
        1.0,
    ]
    for text, reason in (
        ("A is better.", "parse_error"),
        ("[[7]]", "parse_error"),
        ("[[A or B]]", "parse_error"),
        ("[[A]] no, [[B]]", "ambiguous"),
    ):
        value, problem = free.verdict(text)
        assert value is None and (problem or "").startswith(reason), (text, problem)
    choice = PreferenceReader(None, StructuredOutput(choice=["A", "B", "tie"]))
    assert [choice.verdict(t)[0] for t in ("A", " tie\n")] == [1.0, 0.5]
    assert choice.verdict("A.")[0] is None and choice.verdict("[[A]]")[0] is None
    as_json = PreferenceReader(None, StructuredOutput(json={"type": "object"}, field="winner"))
    assert as_json.verdict('{"winner": "B", "why": "shorter"}')[0] == 0.0
    assert (as_json.verdict('{"winner": 1}')[1] or "").startswith("parse_error")


def test_options_name_both_completions_and_only_the_three_verdicts() -> None:
    PairwiseJudgeOptions(base_url=URL, pairs="ring:3", structured={"choice": ["A", "B", "tie"]})
    for bad, message in (
        ({"template": "Grade {completion}"}, "completion_a"),
        ({"template": "{completion_a} vs {completion_b} and {completion}"}, "completion_a"),
        ({"structured": {"choice": ["A", "B", "neither"]}}, "A, B and tie"),
        ({"pairs": "ring:0"}, "pairs"),
        ({"pairs": "swiss"}, "pairs"),
        ({"aggregate": "elo"}, "aggregate"),
    ):
        with pytest.raises(ValueError, match=message):
            PairwiseJudgeOptions(base_url=URL, **bad)


def test_unparseable_and_inconsistent_verdicts_count_as_ties(make_reward: MakeReward) -> None:
    def reply(request: Request) -> str:
        pair = shown(request)
        if "quality 0" in pair["A"] or "quality 0" in pair["B"]:
            return "I cannot tell."  # unparseable: a tie
        return "[[A]]"  # always the first shown: every pair inconsistent, a tie

    with FakeOpenAI(from_text(reply)) as server:
        scores = make_reward(PairwiseJudgeReward, server, reask=0).score(group("g", [0, 1, 2]))
    assert [(s.status, s.value) for s in scores] == [("ok", 0.5)] * 3
    details = [orjson.loads(s.raw or "") for s in scores]
    assert [(d["unparseable"], d["inconsistent"], d["ties"]) for d in details] == [
        (4, 0, 4),
        (2, 2, 4),
        (2, 2, 4),
    ]
    assert sorted(map(tuple, details[0]["comparisons"])) == [
        (1, "A", "?"),
        (1, "B", "?"),
        (2, "A", "?"),
        (2, "B", "?"),
    ]
    assert sorted(map(tuple, details[1]["comparisons"]))[2:] == [(2, "A", "A"), (2, "B", "A")]


def test_groups_of_a_call_by_prompt_a_group_of_one_and_a_failing_group(make_reward: MakeReward) -> None:
    async def behave(request: Request) -> Reply:
        if "broken" in request.user_text:
            return Reply(500, {"error": {"message": "down"}})
        return completion("[[A]]" if "long" in shown(request)["A"] else "[[B]]")

    samples = [
        Sample(prompt="p1", completion="a long answer"),
        Sample(prompt="p2", completion="alone"),
        Sample(prompt="p1", completion="short"),
        Sample(prompt="broken", completion="x"),
        Sample(prompt="broken", completion="y"),
    ]
    with FakeOpenAI(behave) as server:
        scores = make_reward(PairwiseJudgeReward, server, max_retries=0).score(samples)
    assert [s.status for s in scores] == ["ok", "unscorable", "ok", "error", "error"]
    assert [scores[0].value, scores[2].value] == [1.0, 0.0]
    assert "nothing to compare" in (scores[1].error or "")
    assert (
        scores[3].error
        == scores[4].error
        == "http_500: Error code: 500 - down (2 of 2 requests of the group failed)"
    )
    assert len(server.chat_requests) == 4


def test_a_ring_tournament_costs_2nk_requests(make_reward: MakeReward) -> None:
    qualities = list(range(8))
    with FakeOpenAI(biased_pairwise(quality, 0.5)) as server:
        scores = make_reward(PairwiseJudgeReward, server, pairs="ring:2", aggregate="bradley_terry").score(
            group("g", qualities)
        )
    assert len(server.chat_requests) == 2 * 8 * 2
    assert all(sum(orjson.loads(s.raw or "")[k] for k in ("wins", "ties", "losses")) == 4 * 2 for s in scores)
    assert pairs_of(8, "ring:2", "seed") == pairs_of(8, "ring:2", "seed") != pairs_of(8, "ring:2", "other")
    assert len(pairs_of(5, "ring:2", "s")) == len(pairs_of(5, "all", "s")) == 10  # 2K >= n: every pair


def test_requests_pending_before_the_rewards_timeout_time_their_group_out(make_reward: MakeReward) -> None:
    async def behave(request: Request) -> Reply | None:
        return None if "slow" in request.user_text else completion("[[tie]]")

    samples = group("fast", [0, 1]) + [Sample(prompt="slow", completion=c) for c in ("x", "y")]
    with FakeOpenAI(behave) as server:
        scores = make_reward(PairwiseJudgeReward, server, timeout=2.0).score(samples)
    assert [s.status for s in scores] == ["ok", "ok", "timeout", "timeout"]
    assert (scores[2].error or "").startswith("timeout: no answer within the reward's timeout (2 s)")


def test_a_second_call_is_answered_by_the_cache(make_reward: MakeReward) -> None:
    samples = group("g", [1, 0, 2])
    with FakeOpenAI(biased_pairwise(quality, MARGIN)) as server:
        judge = make_reward(PairwiseJudgeReward, server)
        first = judge.score(samples)
        asked = len(server.chat_requests)
        second = judge.score(samples)
    assert asked == 6 and len(server.chat_requests) == asked
    assert [s.value for s in first] == [s.value for s in second]
    assert all(s.meta is not None and s.meta.cache_hit and s.meta.http_attempts == 0 for s in second)
    assert all(s.meta is not None and not s.meta.cache_hit and s.meta.http_attempts == 4 for s in first)
