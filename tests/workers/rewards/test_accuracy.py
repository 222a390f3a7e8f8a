"""The ``accuracy`` reward: values, unscorable references and timeouts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.rules import accuracy
from rewardq.workers.rewards.rules.accuracy import AccuracyReward

Make = Callable[..., AccuracyReward]


@pytest.fixture
def make() -> Iterator[Make]:
    """Build accuracy rewards that are closed after the test."""
    made: list[AccuracyReward] = []

    def _make(**options: Any) -> AccuracyReward:
        reward = AccuracyReward("accuracy", AccuracyReward.Options(**options))
        made.append(reward)
        return reward

    yield _make
    for reward in made:
        reward.close()


def sample(completion: str, solution: Any = None) -> Sample:
    return Sample(completion=completion, columns={} if solution is None else {"solution": solution})


MIXED = [
    sample("So the answer is $\\boxed{42}$.", "42"),
    sample("<think>…</think><answer>\\frac{1}{2}</answer>", "<answer>0.5</answer>"),
    sample("\\boxed{41}", "$42$"),
    sample("\\boxed{3}", "no number in here"),
    sample("\\boxed{3}"),
    sample("\\boxed{3}", 3),
    sample("\\boxed{3}", "  "),
]
EXPECTED = [
    ("ok", 1.0),
    ("ok", 1.0),
    ("ok", 0.0),
    ("unscorable", None),
    ("unscorable", None),
    ("error", None),
    ("unscorable", None),
]


def statuses(scores: Sequence[Score]) -> list[tuple[str, float | None]]:
    return [(s.status, s.value) for s in scores]


def test_mixed_chunk_on_the_main_thread(make: Make) -> None:
    assert statuses(make().score(MIXED)) == EXPECTED


def test_reasons_say_why(make: Make) -> None:
    scores = make().score(MIXED[3:])
    assert "no answer" in (scores[0].error or "")
    assert "no 'solution' column" in (scores[1].error or "")
    assert scores[2].error == "column 'solution' must be a string, got int"
    assert "empty" in (scores[3].error or "")


def test_empty_chunk(make: Make) -> None:
    reward = make()
    assert reward.score([]) == []


def test_chat_completion_uses_assistant_text(make: Make) -> None:
    answer = {"role": "assistant", "content": "It is $\\boxed{7}$"}
    chat = Sample(completion=[answer], columns={"solution": "7"})
    assert statuses(make().score([chat])) == [("ok", 1.0)]


def test_a_slow_parse_times_out(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """math-verify's own alarm stops the step; the sample says ``timeout`` instead of ms-swift's 0.0."""
    import math_verify.parser

    def slow(*args: Any, **kwargs: Any) -> list[Any]:
        time.sleep(60)
        return []

    monkeypatch.setattr(math_verify.parser, "extract_target_from_pred", slow)
    started = time.monotonic()
    (score,) = make(timeout_seconds=1).score([sample("\\boxed{1}", "1")])
    assert time.monotonic() - started < 30  # stopped, not left to finish (with room for a loaded machine)
    assert score.status == "timeout" and score.value is None
    assert "1s" in (score.error or "")


def test_an_endless_comparison_times_out(make: Make) -> None:
    """9^(9^(9^9)) can never be evaluated: math-verify's alarm stops it (on a worker of any pool too:
    tests/workers/test_deadline.py)."""
    reward = make(timeout_seconds=1)
    chunk = [sample("\\boxed{9^{9^{9^{9}}}}", "$3$"), sample("\\boxed{3}", "$3$")]
    scores = reward.score(chunk)
    assert statuses(scores) == [("timeout", None), ("ok", 1.0)]


def test_a_timed_out_comparison_is_a_timeout_unless_another_pair_is_equal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import math_verify
    from math_verify.errors import TimeoutException

    def verify(gold: Any, answer: Any, **kwargs: Any) -> bool:
        if gold == "slow":
            raise TimeoutException("Operation timed out!")
        return bool(gold == answer)

    monkeypatch.setattr(math_verify, "verify", verify)
    with pytest.raises(TimeoutException):
        accuracy.verify_answer(["slow", 1], [2], timeout=1)
    assert accuracy.verify_answer(["slow", 2], [2], timeout=1) == Score.ok(1.0)
    assert accuracy.verify_answer([1], [2], timeout=1) == Score.ok(0.0)


def test_an_error_in_a_comparison_counts_as_unequal_like_ms_swift(monkeypatch: pytest.MonkeyPatch) -> None:
    import math_verify

    def verify(gold: Any, answer: Any, **kwargs: Any) -> bool:
        if gold == "broken":
            raise RuntimeError("sympy fell over")
        return bool(gold == answer)

    monkeypatch.setattr(math_verify, "verify", verify)
    assert accuracy.verify_answer(["broken", 2], [2], timeout=1) == Score.ok(1.0)
    assert accuracy.verify_answer(["broken"], [2], timeout=1) == Score.ok(0.0)


def test_an_unexpected_error_fails_only_its_sample(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    real = accuracy.check_answer

    def check_answer(completion: str, solution: str, timeout: int) -> Score:
        if completion == "boom":
            raise RuntimeError("unexpected")
        return real(completion, solution, timeout)

    monkeypatch.setattr(accuracy, "check_answer", check_answer)
    scores = make().score([sample("boom", "1"), sample("\\boxed{1}", "1")])
    assert statuses(scores) == [("error", None), ("ok", 1.0)]
    assert scores[0].error == "RuntimeError: unexpected"


def test_options() -> None:
    assert AccuracyReward.Options().timeout_seconds == 5
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        AccuracyReward.Options(timeout_seconds=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        AccuracyReward.Options(timeout_s=3)  # type: ignore[call-arg]
    assert AccuracyReward("a", AccuracyReward.Options(timeout=3)).time_limit == 3  # the chunk's, not a step's
    assert AccuracyReward("a", AccuracyReward.Options()).time_limit == AccuracyReward.timeout_default


def test_identity() -> None:
    reward = AccuracyReward("acc", AccuracyReward.Options())
    assert (reward.kind, reward.version) == ("accuracy", "1")
    assert reward.fingerprint.startswith("accuracy@1:")


def test_answer_extraction_is_ms_swifts_regex_in_linear_time() -> None:
    import random
    import re

    from rewardq.workers.rewards.rules.accuracy import answer_part

    regex = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
    pieces = ["<answer>", "</answer>", " ", "\n", "42", "<", "/", "answer>", "x"]
    rng = random.Random(3)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        match = regex.search(text)
        assert answer_part(text) == ((match.group(1).strip(), True) if match else (text, False)), text
    hostile = "<answer>" * 130_000  # ~1 MB: the regex is quadratic here
    assert answer_part(hostile) == (hostile, False)
