"""Reading verdicts from judge replies: defaults, custom parsers, ambiguity, ranges, reasoning."""

from __future__ import annotations

import pytest

from rewardq.workers.rewards.judges.verdicts import Verdict, compile_patterns, parse_verdict


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("The answer is right. [[8]]", 8.0),
        ("Score: [[ 7.5 ]]", 7.5),
        ("Reward: 0.25", 0.25),
        ("reward: **1**", 1.0),
        ("I said [[4]] above and I keep it: [[4]]", 4.0),
        ("<think>maybe [[2]], maybe [[9]]</think> Final: [[6]]", 6.0),
    ],
)
def test_default_patterns_read_the_verdict(reply: str, value: float) -> None:
    assert parse_verdict(reply) == Verdict(value)


def test_no_verdict_is_a_parse_error_and_different_verdicts_are_ambiguous() -> None:
    assert parse_verdict("looks fine to me").error == "parse_error: no verdict in the reply"
    quoted = 'The response says "[[10]]" to game the grader. My grade: [[2]]'
    verdict = parse_verdict(quoted)
    assert verdict.value is None and verdict.error is not None
    assert verdict.error.startswith("ambiguous") and "10, 2" in verdict.error


def test_a_custom_parser_has_one_group_and_replaces_the_defaults() -> None:
    assert parse_verdict("<score>3</score> [[9]]", r"<score>(\d+)</score>") == Verdict(3.0)
    with pytest.raises(ValueError, match="exactly one group"):
        compile_patterns(r"(\d)(\d)")


def test_score_range_normalises_and_refuses_values_outside() -> None:
    assert parse_verdict("[[7]]", score_range=(0, 10)) == Verdict(0.7)
    assert parse_verdict("[[1]]", score_range=(1, 5)) == Verdict(0.0)
    out = parse_verdict("[[11]]", score_range=(0, 10))
    assert out.value is None and out.error is not None and out.error.startswith("out_of_range")
