"""Normalization of trainer rows into :class:`~rewardq.schema.Sample`, with precise errors.

Accepted shapes:
- TRL: ``prompt`` (string or chat messages, optional) and ``completion`` (string or chat messages);
- ms-swift: ``messages``, whose last message is the assistant's completion.
Every other key is a dataset column (``solution``, ``completion_ids`` …) and travels to the scorers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from rewardq.errors import InvalidInputError, Problem

SHAPES_HINT = (
    "a record needs 'completion' (TRL: a string or chat messages) or 'messages' ending with an "
    "assistant message (ms-swift)"
)


def _split_messages(messages: Any) -> tuple[Any, Any, Problem | None]:
    if not isinstance(messages, list) or not messages:
        return (
            None,
            None,
            Problem("messages", f"must be a non-empty list of chat messages, got {_kind(messages)}"),
        )
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "assistant":
        role = last.get("role") if isinstance(last, Mapping) else _kind(last)
        return (
            None,
            None,
            Problem("messages", f"the last message must be the assistant's completion, got {role!r}"),
        )
    content = last.get("content")
    # A text completion stays a string, as ms-swift hands it to reward functions; multimodal content
    # keeps its message so that the parts survive.
    return messages[:-1] or None, content if isinstance(content, str | None) else [last], None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def to_sample(record: Mapping[str, Any]) -> dict[str, Any]:
    """Normalize one row into the wire form of a :class:`Sample` (``prompt``, ``completion``, ``columns``).

    Raises InvalidInputError (without a line number) naming the field. The checks here are the
    Sample model's, written out: a plain dict check per row is several times faster than building a
    model, and the worker validates with the model again.
    """
    if not isinstance(record, Mapping):
        raise InvalidInputError([Problem("", f"a sample must be a JSON object, got {_kind(record)}")])
    bad_keys = [k for k in record if not isinstance(k, str)]
    if bad_keys:
        raise InvalidInputError([Problem(str(bad_keys[0]), "column names must be strings")])
    columns = dict(record)
    if "messages" in columns and "completion" not in columns:
        prompt, completion, problem = _split_messages(columns.pop("messages"))
        if problem is not None:
            raise InvalidInputError([problem])
    elif "completion" in columns:
        completion = columns.pop("completion")
        prompt = columns.pop("prompt", None)
    else:
        raise InvalidInputError([Problem("completion", f"missing; {SHAPES_HINT}")])
    problems = [
        p for p in (_check_turns("completion", completion), _check_turns("prompt", prompt, True)) if p
    ]
    if problems:
        raise InvalidInputError(problems)
    return {"prompt": prompt, "completion": completion, "columns": columns}


def _check_turns(field: str, value: Any, optional: bool = False) -> Problem | None:
    """A prompt or completion is a string or a list of chat messages ({role: str, content: str | list})."""
    if isinstance(value, str) or (optional and value is None):
        return None
    if not isinstance(value, list):
        return Problem(field, f"must be a string or a list of chat messages, got {_kind(value)}")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            return Problem(f"{field}.{i}", f"a chat message must be an object, got {_kind(message)}")
        if not isinstance(message.get("role"), str):
            return Problem(f"{field}.{i}.role", f"must be a string, got {_kind(message.get('role'))}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            return Problem(
                f"{field}.{i}.content", f"must be a string or a list of parts, got {_kind(content)}"
            )
    return None


def describe_error(err: Mapping[str, Any]) -> Problem:
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("list[", "str", "function-"))]
    if loc[:1] == ["columns"]:
        loc = loc[1:]
    got = err.get("input")
    return Problem(".".join(loc), f"{err['msg']} (got {_kind(got)})")


def record_size(record: Mapping[str, Any]) -> int:
    """Size of a record as JSON, the measure ``max_record_bytes`` limits."""
    return len(orjson.dumps(record))


def to_samples(
    records: Iterable[Mapping[str, Any]],
    *,
    max_record_bytes: int,
    lines: Iterable[int] | None = None,
    source: str | None = None,
) -> list[dict[str, Any]]:
    """Normalize many rows, checking sizes; collects every problem and raises once, before any enqueue.

    ``lines`` gives each record's line number in its file; without it problems name the sample index.
    """
    samples: list[dict[str, Any]] = []
    problems: list[Problem] = []
    line_numbers = iter(lines) if lines is not None else None
    for index, record in enumerate(records):
        line = next(line_numbers) if line_numbers is not None else None
        where = {"line": line} if line is not None else {"index": index}
        try:
            size = record_size(record)
        except TypeError as e:
            problems.append(Problem("", f"not JSON-serializable: {e}", **where))
            continue
        if size > max_record_bytes:
            problems.append(
                Problem("", f"record is {size} bytes as JSON, over the limit of {max_record_bytes}", **where)
            )
            continue
        try:
            samples.append(to_sample(record))
        except InvalidInputError as e:
            problems.extend(Problem(p.field, p.message, **where) for p in e.problems)
    if problems:
        raise InvalidInputError(problems, source=source)
    return samples
