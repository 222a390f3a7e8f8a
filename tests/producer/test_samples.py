"""Normalizing TRL and ms-swift rows, and the errors bad rows get."""

import orjson
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
        ({"completion": [{"content": "a"}]}, "completion.0.role", "missing"),
        ({"completion": [{"role": 1}]}, "completion.0.role", "must be a string, got int"),
        ({"completion": [5]}, "completion.0", "a chat message must be an object, got int"),
        ({"completion": ("a",)}, "completion", "must be a string or a list of chat messages, got tuple"),
        ({"completion": [{"role": "assistant", "content": "a", 1: 2}]}, "completion.0.1", "keys must be"),
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


# Rows in their wire form, valid or not in every way the schema can object to. The producer and the
# worker must agree on each: before one source of truth, the producer's hand-written checks required
# a message's role where the schema did not, and rejected tuples and bytes that the schema coerced.
WIRE_CASES = [
    {"completion": "c"},
    {"completion": "c", "prompt": None},
    {"completion": [{"role": "assistant", "content": None, "tool_calls": []}]},
    {"completion": [{"role": "assistant", "content": [{"type": "text", "text": "a"}]}]},
    {"completion": [{"content": "a"}]},
    {"completion": [{"role": None, "content": "a"}]},
    {"completion": [{"role": "assistant", "content": 1}]},
    {"completion": [{"role": "assistant", "content": {"text": "a"}}]},
    {"completion": []},
    {"completion": [5]},
    {"completion": 5},
    {"completion": None},
    {"completion": "c", "prompt": 3},
    {"completion": "c", "prompt": [{"role": "user"}]},
    {"completion": "c", "prompt": [{"content": "q"}]},
    {"completion": "c", "prompt": [{"role": "user", "content": 2.5}]},
]


@pytest.mark.parametrize("wire", WIRE_CASES)
def test_producer_and_worker_apply_the_same_sample_rules(wire: dict) -> None:
    from pydantic import ValidationError

    row = {k: v for k, v in wire.items()}
    try:
        to_sample(row)
        producer_accepts = True
    except InvalidInputError:
        producer_accepts = False
    # What the worker does with the JSON the producer would send.
    try:
        Sample.model_validate_json(orjson.dumps({**wire, "columns": {}}))
        worker_accepts = True
    except ValidationError:
        worker_accepts = False
    assert producer_accepts == worker_accepts


def test_sizes_measured_by_a_reader_are_not_measured_again() -> None:
    rows = [{"completion": "a"}, {"completion": "b"}]
    with pytest.raises(
        InvalidInputError, match="line 8: record is 5000 bytes as JSON, over the limit of 100"
    ):
        to_samples(rows, max_record_bytes=100, sizes=[10, 5000], lines=[7, 8])
    assert to_samples(rows, max_record_bytes=100, sizes=[10, 20]) == [
        {"prompt": None, "completion": "a", "columns": {}},
        {"prompt": None, "completion": "b", "columns": {}},
    ]


def test_a_record_that_is_not_json_gets_the_schemas_problem_when_there_is_one() -> None:
    with pytest.raises(InvalidInputError) as info:
        to_samples(
            [{"completion": "a", 7: "x"}, {"completion": "b", "when": object()}], max_record_bytes=1000
        )
    first, second = info.value.problems
    assert (first.index, first.field, first.message) == (0, "7", "column names must be strings")
    assert (second.index, second.field) == (1, "")
    assert second.message.startswith("not JSON-serializable")
