"""Tests for the bundled demo dataset (``rewardq.workers/data/demo_rollouts.jsonl``) behind ``rewardq demo``.

Each record carries a ``case`` column saying what it demonstrates:

- ``correct``: right answer, ``<think>…</think><answer>…</answer>`` format, ``\\boxed{}`` answer;
- ``correct_bad_format``: right answer outside that format;
- ``wrong``: well formatted, wrong answer;
- ``malformed``: unbalanced braces, no answer, truncated or empty;
- ``equivalent``: right answer written in another form than the solution (0.5 vs 1/2, sqrt(18) vs 3sqrt(2));
- ``no_solution``: no ``solution`` column, so accuracy is unscorable;
- ``degenerate``: repetitive completions;
- ``string_check``: a ``reference`` column for the string-check and text-similarity rewards.
"""

from __future__ import annotations

import re
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from rewardq.rollouts import read_records
from rewardq.wire.settings import Settings

CASES = {
    "correct",
    "correct_bad_format",
    "wrong",
    "malformed",
    "equivalent",
    "no_solution",
    "degenerate",
    "string_check",
}
THINK_ANSWER = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    path = Path(str(files("rewardq.workers") / "data" / "demo_rollouts.jsonl"))
    return [r.data for r in read_records(path, max_record_bytes=Settings().max_record_bytes)]


def completion_of(row: dict[str, Any]) -> str:
    if "completion" in row:
        (message,) = row["completion"]
    else:
        message = row["messages"][-1]
    assert message["role"] == "assistant"
    assert isinstance(message["content"], str)
    return str(message["content"])


def by_case(rows: list[dict[str, Any]], case: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["case"] == case]


def test_size_and_unique_sequential_ids(rows: list[dict[str, Any]]) -> None:
    assert 36 <= len(rows) <= 48
    assert [r["id"] for r in rows] == [f"demo-{i:03d}" for i in range(1, len(rows) + 1)]


def test_every_record_is_a_trl_or_ms_swift_row(rows: list[dict[str, Any]]) -> None:
    trl = [r for r in rows if "completion" in r]
    swift = [r for r in rows if "messages" in r]

    assert len(trl) + len(swift) == len(rows)
    assert abs(len(trl) - len(swift)) <= len(rows) // 5
    for row in trl:
        assert [m["role"] for m in row["prompt"]] == ["user"], row["id"]
        assert [m["role"] for m in row["completion"]] == ["assistant"], row["id"]
    for row in swift:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"], row["id"]
    for row in rows:
        completion_of(row)


def test_every_case_is_present_in_both_shapes_where_there_are_several(rows: list[dict[str, Any]]) -> None:
    counts = Counter(r["case"] for r in rows)

    assert set(counts) == CASES
    assert all(n >= 3 for n in counts.values()), counts
    for case in CASES:
        shapes = {"completion" in r for r in by_case(rows, case)}
        assert shapes == {True, False}, case


def test_solutions_and_references(rows: list[dict[str, Any]]) -> None:
    without_solution = [r for r in rows if "solution" not in r]
    with_reference = [r for r in rows if "reference" in r]

    assert {r["case"] for r in without_solution} == {"no_solution", "string_check"}
    assert len(by_case(rows, "no_solution")) > 0
    assert all(isinstance(r["reference"], str) and r["reference"] for r in with_reference)
    assert {r["case"] for r in with_reference} == {"string_check"}
    for row in rows:
        if "solution" in row:
            assert "\\boxed{" in row["solution"] or row["solution"].count("$") >= 2, row["id"]


def test_format_cases(rows: list[dict[str, Any]]) -> None:
    for row in by_case(rows, "correct") + by_case(rows, "equivalent") + by_case(rows, "wrong"):
        assert THINK_ANSWER.match(completion_of(row)), row["id"]
    for row in by_case(rows, "correct_bad_format"):
        assert not THINK_ANSWER.match(completion_of(row)), row["id"]


def test_degenerate_completions_repeat_themselves(rows: list[dict[str, Any]]) -> None:
    for row in by_case(rows, "degenerate"):
        words = completion_of(row).split()
        trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
        assert trigrams.most_common(1)[0][1] >= 10, row["id"]


def test_answers_match_solutions_as_their_case_says(rows: list[dict[str, Any]]) -> None:
    """Checked with math-verify as TRL's and open-r1's accuracy rewards use it: the answer from LaTeX only."""
    math_verify = pytest.importorskip("math_verify")
    answer_config = [
        math_verify.LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)
    ]
    for row in rows:
        if "solution" not in row:
            continue
        gold = math_verify.parse(row["solution"], extraction_mode="first_match")
        assert gold, row["id"]
        answer = math_verify.parse(
            completion_of(row), extraction_config=answer_config, extraction_mode="first_match"
        )
        matches = bool(answer) and math_verify.verify(gold, answer)
        if row["case"] in {"correct", "correct_bad_format", "equivalent"}:
            assert matches, row["id"]
        elif row["case"] in {"wrong", "malformed"}:
            assert not matches, row["id"]
    for row in by_case(rows, "equivalent"):
        boxed = re.search(r"\\boxed\{(.+)\}", completion_of(row))
        assert boxed is not None
        assert boxed.group(1) not in row["solution"], row["id"]
