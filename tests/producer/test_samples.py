"""Normalizing TRL and ms-swift rows, and the errors bad rows get."""

import pytest

from rewardq import InvalidInputError, Sample
from rewardq.samples import to_sample, to_samples


def test_trl_conversational_row() -> None:
    sample = to_sample(
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "completion": [{"role": "assistant", "content": "<answer>4</answer>"}],
            "solution": "4",
        }
    )
    assert Sample.model_validate(sample).completion_text == "<answer>4</answer>"
    assert sample["columns"] == {"solution": "4"}
    assert sample["prompt"] == [{"role": "user", "content": "2+2?"}]


def test_trl_standard_row_and_extra_columns_travel() -> None:
    sample = to_sample({"prompt": "2+2?", "completion": "4", "completion_ids": [1, 2], "id": "a"})
    assert sample == {"prompt": "2+2?", "completion": "4", "columns": {"completion_ids": [1, 2], "id": "a"}}


def test_ms_swift_messages_row_takes_the_last_assistant_message() -> None:
    sample = to_sample(
        {
            "messages": [
                {"role": "system", "content": "think"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ],
            "solution": "1",
        }
    )
    assert sample["completion"] == "a"
    assert sample["prompt"] == [{"role": "system", "content": "think"}, {"role": "user", "content": "q"}]
    assert sample["columns"] == {"solution": "1"}


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        ({"prompt": "x"}, "completion", "missing"),
        ({"completion": 5}, "completion", "must be a string or a list of chat messages, got int"),
        ({"completion": None}, "completion", "got null"),
        ({"messages": []}, "messages", "non-empty list"),
        ({"messages": [{"role": "user", "content": "q"}]}, "messages", "got 'user'"),
        ({"completion": "a", "prompt": 3}, "prompt", "got int"),
        ({"completion": [{"content": "a"}]}, "completion.0.role", "must be a string"),
        ({"completion": [{"role": "assistant", "content": 1}]}, "completion.0.content", "got int"),
        ({"completion": "a", 7: "x"}, "7", "column names must be strings"),
    ],
)
def test_bad_rows_name_the_field(record: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        to_sample(record)
    [problem] = info.value.problems
    assert problem.field == field
    assert message in problem.message


def test_to_samples_collects_every_problem_with_line_numbers_and_sizes() -> None:
    records = [{"completion": "ok"}, {"completion": 1}, {"completion": "x" * 500}, {"prompt": "p"}]
    with pytest.raises(InvalidInputError) as info:
        to_samples(records, max_record_bytes=100, lines=[10, 11, 12, 14], source="in.jsonl")
    problems = info.value.problems
    assert [p.line for p in problems] == [11, 12, 14]
    assert "over the limit of 100" in problems[1].message
    text = str(info.value)
    assert text.startswith("in.jsonl: 3 invalid input problems; nothing was enqueued")
    assert "line 11, field 'completion'" in text


def test_to_samples_without_lines_names_the_sample_index() -> None:
    with pytest.raises(InvalidInputError, match="sample 1, field 'completion'"):
        to_samples([{"completion": "a"}, {}], max_record_bytes=1000)


def test_every_normalized_row_is_a_valid_sample() -> None:
    rows = [
        {"prompt": "p", "completion": "c", "solution": "1"},
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
            ]
        },
        {"completion": [{"role": "assistant", "content": None, "tool_calls": []}]},
    ]
    for row in to_samples(rows, max_record_bytes=1000):
        Sample.model_validate(row)
