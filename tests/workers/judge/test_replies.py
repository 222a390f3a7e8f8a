"""Reading a judge's reply: free text, structured output, labels, several choices, refusals."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rewardq.workers.rewards.judges.options import JudgeOptions
from rewardq.workers.rewards.judges.replies import ReplyReader

URL = "http://127.0.0.1:8000/v1"


def body(*contents: str | None, finish: str = "stop", refusal: str | None = None) -> dict[str, Any]:
    return {
        "choices": [
            {"message": {"role": "assistant", "content": c, "refusal": refusal}, "finish_reason": finish}
            for c in contents
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5},
    }


def reader(**options: Any) -> ReplyReader:
    return ReplyReader(JudgeOptions(base_url=URL, **options))


@pytest.mark.parametrize(
    ("reply", "value", "error"),
    [
        ("Clear and correct. [[8]]", 0.8, None),
        ("Reward: 10", 1.0, None),
        ("<think>maybe [[2]]</think> on reflection [[9]]", 0.9, None),  # only after the reasoning
        ("The answer says 'Reward: 10'. My grade: [[3]]", None, "ambiguous"),
        ("no grade here", None, "parse_error"),
        ("[[11]]", None, "out_of_range"),
        ("", None, "parse_error"),
    ],
)
def test_free_text_on_the_default_scale(reply: str, value: float | None, error: str | None) -> None:
    reading = reader().read(body(reply))
    assert reading.value == pytest.approx(value) if value is not None else reading.value is None
    assert (reading.reason == error) if error else reading.error is None
    assert reading.raw == reply


def test_a_parser_regex_reads_its_group() -> None:
    reading = reader(template="{completion}", parser=r"Final score: (\d+)", score_range=(1, 5)).read(
        body("Final score: 4")
    )
    assert reading.value == pytest.approx(0.75)


def test_structured_choice_and_regex_are_the_verdict_as_a_whole() -> None:
    choice = reader(structured={"choice": ["0", "1", "2"]}, score_range=(0, 2))
    assert choice.read(body("2")).value == 1.0
    assert choice.read(body("two")).reason == "parse_error"
    regex = reader(structured={"regex": "[0-9]"}, score_range=(0, 9))
    assert regex.read(body(" 9\n")).value == 1.0


def test_structured_json_reads_its_field() -> None:
    schema = {"type": "object", "properties": {"grade": {"type": "integer"}}}
    json_reader = reader(structured={"json": schema, "field": "grade"}, score_range=(1, 5))
    assert json_reader.read(body('{"grade": 5, "why": "good"}')).value == 1.0
    wrong = json_reader.read(body('{"score": 5}'))
    assert wrong.reason == "parse_error" and wrong.raw == '{"score": 5}'
    assert json_reader.read(body("{not json")).reason == "parse_error"


def test_label_grading() -> None:
    labels = reader(labels=["correct", "partial", "wrong"], passing_labels=["correct", "partial"])
    assert [labels.read(body(x)).value for x in ("correct", "partial", "wrong")] == [1.0, 1.0, 0.0]
    assert labels.read(body("dunno")).reason == "parse_error"


def test_several_choices_average_and_all_must_parse() -> None:
    mean = reader().read(body("[[10]]", "[[6]]", "[[8]]"))
    assert mean.value == pytest.approx(0.8)
    assert orjson.loads(mean.raw or "") == ["[[10]]", "[[6]]", "[[8]]"]
    assert reader().read(body("[[10]]", "no idea")).reason == "parse_error"


def test_refusals_cuts_and_usage() -> None:
    refused = reader().read(body(None, refusal="I can't grade this"))
    assert refused.reason == "refused" and "can't grade" in (refused.error or "")
    assert reader().read(body("[[3]]", finish="content_filter")).reason == "refused"
    cut = reader().read(body("Let me think about", finish="length"))
    assert cut.reason == "parse_error" and cut.truncated and "max_tokens" in (cut.error or "")
    ok = reader().read(body("[[5]]"))
    assert (ok.prompt_tokens, ok.completion_tokens, ok.truncated) == (20, 5, False)


@pytest.mark.parametrize("reply", [{}, {"choices": []}, [1, 2], {"choices": "x"}])
def test_a_reply_without_choices_is_an_invalid_response(reply: Any) -> None:
    assert reader().read(reply).reason == "invalid_response"
