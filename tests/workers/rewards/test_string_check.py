"""Tests of the ``string_check`` reward kind and the reference options it shares with ``text_similarity``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.rules.string_check import StringCheckReward


def reward(**options: Any) -> StringCheckReward:
    return StringCheckReward("check", StringCheckReward.Options(**options))


def sample(completion: str | list[Any], **columns: Any) -> Sample:
    return Sample(completion=completion, columns=columns)


def values(scores: list[Score]) -> list[float | None]:
    return [s.value for s in scores]


@pytest.mark.parametrize(
    ("operation", "completion", "expected"),
    [
        ("eq", "Paris", 1.0),
        ("eq", "paris", 0.0),
        ("eq", "Paris.", 0.0),
        ("ne", "Paris", 0.0),
        ("ne", "paris", 1.0),
        ("like", "The capital is Paris.", 1.0),
        ("like", "the capital is paris.", 0.0),
        ("ilike", "THE CAPITAL IS PARIS.", 1.0),
        ("ilike", "The capital is Lyon.", 0.0),
    ],
)
def test_operations(operation: str, completion: str, expected: float) -> None:
    [score] = reward(operation=operation).score([sample(completion, reference="Paris")])
    assert score == Score.ok(expected)


def test_like_is_containment_not_sql_wildcards() -> None:
    check = reward(operation="like", reference="50%")
    assert values(check.score([sample("growth was 50%"), sample("growth was 50 percent")])) == [1.0, 0.0]
    assert values(reward(operation="like", reference="a_c").score([sample("abc")])) == [0.0]


def test_ilike_folds_case_beyond_ascii() -> None:
    assert values(reward(operation="ilike", reference="STRASSE").score([sample("die Straße")])) == [1.0]


def test_whitespace_counts_unless_strip() -> None:
    samples = [sample("  Paris\n", reference=" Paris")]
    assert values(reward(operation="eq").score(samples)) == [0.0]
    assert values(reward(operation="eq", strip=True).score(samples)) == [1.0]


def test_batch_keeps_order_and_length() -> None:
    samples = [
        sample("a", reference="a"),
        sample("b", reference="a"),
        sample("a"),
        sample("a", reference="a"),
    ]
    scores = reward(operation="eq").score(samples)
    assert [s.status for s in scores] == ["ok", "ok", "unscorable", "ok"]
    assert values(scores) == [1.0, 0.0, None, 1.0]


def test_fixed_reference_ignores_columns() -> None:
    check = reward(operation="eq", reference="42")
    assert values(check.score([sample("42", reference="41"), sample("42")])) == [1.0, 1.0]


def test_reference_column_option() -> None:
    check = reward(operation="eq", reference_column="answer")
    assert values(check.score([sample("42", answer="42", reference="41")])) == [1.0]


@pytest.mark.parametrize("columns", [{}, {"reference": None}, {"answer": "42"}])
def test_missing_reference_is_unscorable(columns: dict[str, Any]) -> None:
    [score] = reward(operation="eq").score([sample("42", **columns)])
    assert score.status == "unscorable"
    assert score.value is None
    assert score.error is not None and "'reference'" in score.error


@pytest.mark.parametrize(("value", "text"), [(42, "42"), (2.5, "2.5"), (True, "True")])
def test_scalar_references_are_compared_as_str(value: Any, text: str) -> None:
    assert values(reward(operation="eq").score([sample(text, reference=value)])) == [1.0]


@pytest.mark.parametrize("value", [["42"], {"answer": "42"}])
def test_non_scalar_reference_is_an_error_score_naming_the_column(value: Any) -> None:
    scores = reward(operation="eq", reference_column="answer").score(
        [sample("42", answer=value), sample("42", answer="42")]
    )
    assert scores[0].status == "error"
    assert scores[0].value is None
    assert scores[0].error is not None and "'answer'" in scores[0].error
    assert scores[1] == Score.ok(1.0)


def test_chat_completion_uses_assistant_text() -> None:
    completion = [{"role": "assistant", "content": "The answer is "}, {"role": "assistant", "content": "42"}]
    assert values(reward(operation="like", reference="is 42").score([sample(completion)])) == [1.0]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"operation": "contains"}, "operation"),
        ({"operation": "neq"}, "operation"),
        ({"operation": "eq", "reference_column": ""}, "reference_column"),
        ({"operation": "eq", "strip": "sometimes"}, "strip"),
        ({"operation": "eq", "case_sensitive": False}, "case_sensitive"),
    ],
)
def test_invalid_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        StringCheckReward.Options(**options)
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_reference_and_reference_column_are_exclusive() -> None:
    with pytest.raises(ValidationError, match=r"`reference`.*`reference_column`"):
        StringCheckReward.Options(operation="eq", reference="42", reference_column="answer")


def test_options_are_frozen_and_fingerprinted() -> None:
    check = reward(operation="eq")
    with pytest.raises(ValidationError):
        check.options.operation = "ne"  # type: ignore[misc]
    assert check.fingerprint.startswith("string_check@1:")
    assert check.fingerprint != reward(operation="ne").fingerprint


def test_builtin_defaults_are_an_exact_match() -> None:
    reward = StringCheckReward("string_check", StringCheckReward.Options())
    assert reward.options.operation == "eq"
