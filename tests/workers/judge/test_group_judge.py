"""``group_judge`` (listwise) against a fake judge that grades by a hidden quality wherever a completion is
shown: each request's seeded order is mapped back to the members; strict grade lists; failures per group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.judges.group_judge import GroupJudgeOptions, GroupJudgeReward
from rewardq.workers.rewards.judges.options import StructuredOutput
from rewardq.workers.rewards.judges.replies import GradesReader
from tests.fake_openai import FakeOpenAI, Request, from_text, listwise, shown

MakeReward = Callable[..., Any]
URL = "http://127.0.0.1:8000/v1"


def grade(text: str) -> float:
    return float(text.rsplit(" ", 1)[1])


def group(name: str, grades: list[int]) -> list[Sample]:
    return [Sample(prompt="Explain.", completion=f"{name} answer graded {g}", group=name) for g in grades]


def test_each_requests_order_is_shuffled_and_mapped_back(make_reward: MakeReward) -> None:
    samples = group("alpha", [3, 9, 1, 7, 5]) + group("beta", [2, 8, 6])
    with FakeOpenAI(listwise(grade)) as server:
        judge = make_reward(GroupJudgeReward, server, shuffles=3, shuffle_seed=7)
        scores = judge.score(samples)
    assert [s.status for s in scores] == ["ok"] * 8
    assert [s.value for s in scores] == pytest.approx([0.3, 0.9, 0.1, 0.7, 0.5, 0.2, 0.8, 0.6])
    requests = server.chat_requests
    assert len(requests) == 3 + 3
    texts = [s.completion_text for s in samples[:5]]
    shown_orders = [[texts.index(t) for t in shown(r).values()] for r in requests if "alpha" in r.user_text]
    assert sorted(shown_orders) == sorted(judge.orders(texts))  # the seeded orders, reproducible
    # Rotations of one shuffle: each completion at another place in each request.
    assert all(len({order.index(m) for order in shown_orders}) == 3 for m in range(5))
    detail = orjson.loads(scores[1].raw or "")
    assert detail["grades"] == pytest.approx([0.9] * 3)
    assert detail["shown_at"] == [order.index(1) + 1 for order in judge.orders(texts)]


def test_grades_are_read_strictly() -> None:
    free = GradesReader(None, None, (0, 10))
    assert free.verdict("Fine. [[7, 3, 10]]", 3) == ((0.7, 0.3, 1.0), None)
    for text, completions, reason in (
        ("[[7, 3]]", 3, "parse_error: 2 grades for 3 responses"),
        ("[[7, 3, x]]", 3, "parse_error"),
        ("[[7, 3, 11]]", 3, "out_of_range"),
        ("[[7, 3, 4]] or rather [[7, 4, 4]]", 3, "ambiguous"),
        ("7, 3, 4", 3, "parse_error: no verdict"),
    ):
        value, problem = free.verdict(text, completions)
        assert value is None and (problem or "").startswith(reason), (text, problem)
    as_json = GradesReader(None, StructuredOutput(json={"type": "object"}, field="grades"), (1, 5))
    assert as_json.verdict('{"grades": [1, 5]}', 2) == ((0.0, 1.0), None)
    assert (as_json.verdict('{"grades": [1, true]}', 2)[1] or "").startswith("parse_error")


def test_options_name_the_listing() -> None:
    assert GroupJudgeOptions(base_url=URL).score_range == (0.0, 10.0)
    with pytest.raises(ValueError, match="completions"):
        GroupJudgeOptions(base_url=URL, template="Grade {completion}")


def test_a_reply_that_does_not_grade_every_completion_fails_its_group_only(make_reward: MakeReward) -> None:
    def reply(request: Request) -> str:
        grades = [grade(t) for t in shown(request).values()]
        if "beta" in request.user_text:
            grades = grades[:-1]
        return "[[" + ", ".join(f"{g:g}" for g in grades) + "]]"

    with FakeOpenAI(from_text(reply)) as server:
        scores = make_reward(GroupJudgeReward, server, reask=1).score(
            group("alpha", [4, 6]) + group("beta", [1, 2, 3])
        )
    assert [s.status for s in scores] == ["ok", "ok", "error", "error", "error"]
    assert scores[2].error == "parse_error: 2 grades for 3 responses (1 of 1 requests of the group failed)"
    assert scores[2].raw is not None and scores[2].meta is not None and scores[2].meta.http_attempts == 2
    assert len(server.chat_requests) == 1 + 2  # the unreadable reply was asked again once
