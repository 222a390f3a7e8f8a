"""Normalization of trainer rows into the wire form of :class:`~rewardq.wire.schema.Sample`, with
precise errors.

Accepted shapes:
- TRL: ``prompt`` (string or chat messages, optional) and ``completion`` (string or chat messages);
- ms-swift: ``messages``, whose last message is the assistant's completion.
A row's ``group`` (verl's ``uid``) names its group for group-level rewards (:mod:`rewardq.wire.groups`).
Every other key is a dataset column (``solution``, ``completion_ids`` …) and travels to the scorers.

This module only reshapes rows; what a valid sample is, the schema alone says: a batch is checked by
one call of the :class:`Sample` model's own validator (:func:`~rewardq.wire.schema.samples_checker`, strict:
what JSON carries), the model the worker validates with. Its errors become problems naming the field.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from rewardq.wire.errors import InvalidInputError, Problem
from rewardq.wire.groups import MAX_GROUP_NAME, group_key
from rewardq.wire.schema import AUDIT_LIMIT_ERROR, samples_checker

MAX_JSON_DEPTH = 255  # orjson's limit on nesting when it encodes
JSON_TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels, the most rewardq's JSON encoder accepts"

SHAPES_HINT = (
    "a record needs 'completion' (TRL: a string or chat messages) or 'messages' ending with an "
    "assistant message (ms-swift)"
)

# How the schema's union members and error types read in a problem ("must be a string or ...").
_MEMBERS = {
    "str": "a string",
    "list[ChatMessage]": "a list of chat messages",
    "list[any]": "a list of parts",
    "dict[str,any]": "an object",
}
_TYPES = {
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "int_type": "an integer",
    "float_type": "a number",
}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _reshape(record: Any) -> dict[str, Any] | Problem:
    """The wire form's fields of one row (not yet validated), or the problem with its shape."""
    if not isinstance(record, Mapping):
        return Problem("", f"a sample must be a JSON object, got {_kind(record)}")
    columns = dict(record)
    if "completion" in columns:
        wire = {
            "prompt": columns.pop("prompt", None),
            "completion": columns.pop("completion"),
            "columns": columns,
        }
        return _grouped(wire, columns) if "group" in columns else wire
    if "messages" not in columns:
        return Problem("completion", f"missing; {SHAPES_HINT}")
    messages = columns.pop("messages")
    if not isinstance(messages, list) or not messages:
        return Problem("messages", f"must be a non-empty list of chat messages, got {_kind(messages)}")
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "assistant":
        role = last.get("role") if isinstance(last, Mapping) else _kind(last)
        return Problem("messages", f"the last message must be the assistant's completion, got {role!r}")
    content = last.get("content")
    # A text completion stays a string, as ms-swift hands it to reward functions; multimodal content
    # keeps its message so that the parts survive.
    completion = content if isinstance(content, str | None) else [last]
    wire = {"prompt": messages[:-1] or None, "completion": completion, "columns": columns}
    return _grouped(wire, columns) if "group" in columns else wire


def _grouped(wire: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    """The wire form with the row's ``group`` column as the sample's group (none when it is None)."""
    group = columns.pop("group")
    if group is not None:
        wire["group"] = group
    return wire


def row_group_key(record: Any) -> str:
    """A row's group key (:func:`rewardq.wire.groups.group_key`): its ``group``, else its prompt as the
    wire form has it; a malformed row's is its own ("" when it has no shape)."""
    wire = _reshape(record)
    return "" if isinstance(wire, Problem) else group_key(wire.get("group"), wire.get("prompt"))


def to_sample(record: Mapping[str, Any]) -> dict[str, Any]:
    """Normalize and check one row; raises InvalidInputError (without a line number) naming the field."""
    try:
        return to_samples([record], max_record_bytes=None)[0]
    except InvalidInputError as e:
        raise InvalidInputError([Problem(p.field, p.message) for p in e.problems]) from None


def to_samples(
    records: Iterable[Mapping[str, Any]],
    *,
    max_record_bytes: int | None,
    lines: Iterable[int] | None = None,
    sizes: Sequence[int] | None = None,
    source: str | None = None,
) -> list[dict[str, Any]]:
    """Normalize many rows, checking sizes; collects every problem and raises once, before any enqueue.

    ``lines`` gives each record's line number in its file; without it problems name the sample index.
    A record's size is its length as JSON: ``sizes`` when the caller measured them (a file reader),
    else measured here; ``max_record_bytes=None`` skips the size check.
    """
    records = list(records)
    numbers = list(lines) if lines is not None else None
    problems: dict[int, Problem] = {}
    unserializable: dict[int, Problem] = {}  # reported only when the schema finds nothing more precise
    wires: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        try:
            problem = _size_problem(record, sizes[index] if sizes is not None else None, max_record_bytes)
        except TypeError as e:
            problem, unserializable[index] = None, Problem("", unserializable_message(e))
        wire = _reshape(record) if problem is None else problem
        if isinstance(wire, Problem):
            problems[index] = wire
            wires.append({"completion": ""})  # a placeholder keeps indices aligned for the validator
        else:
            wires.append(wire)
    try:
        samples_checker().validate_python(wires, strict=True)
    except ValidationError as e:
        by_sample: dict[int, list[Any]] = defaultdict(list)
        for err in e.errors(include_url=False):
            by_sample[int(err["loc"][0])].append({**err, "loc": err["loc"][1:]})
        for index, errors in by_sample.items():
            problems.setdefault(index, describe_errors(errors))
    for index, problem in unserializable.items():
        problems.setdefault(index, problem)
    if problems:
        raise InvalidInputError(
            [_placed(p, i, numbers) for i, p in sorted(problems.items())],
            source=source,
        )
    return wires


def _size_problem(record: Any, size: int | None, limit: int | None) -> Problem | None:
    """The record's size over the limit, as a problem; raises TypeError when it is not JSON."""
    if limit is None:
        return None
    if size is None:
        size = record_size(record)
    if size > limit:
        return Problem("", f"record is {size} bytes as JSON, over the limit of {limit}")
    return None


def unserializable_message(error: TypeError) -> str:
    """Why orjson could not encode a record, in words (it refuses nesting deeper than 255 levels)."""
    if "Recursion limit" in str(error):
        return JSON_TOO_DEEP
    return f"not JSON-serializable: {error}"


def _placed(problem: Problem, index: int, lines: list[int] | None) -> Problem:
    """The problem at its line in the file where lines are known, else at its sample index."""
    if lines is not None:
        return Problem(problem.field, problem.message, line=lines[index])
    return Problem(problem.field, problem.message, index=index)


def record_size(record: Any) -> int:
    """Size of a record as JSON, the measure ``max_record_bytes`` limits."""
    return len(orjson.dumps(record))


def json_size(record: Any) -> int | None:
    """:func:`record_size`, or None when the record cannot be encoded (nested too deep)."""
    try:
        return record_size(record)
    except TypeError:
        return None


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> Problem:
    """One sample's validation errors (locations from the sample's fields) as one problem: the deepest
    field that failed, and what the schema expected there (each member of a union)."""
    deepest = max(errors, key=lambda err: len(_field_path(err["loc"])))
    path = _field_path(deepest["loc"])
    field = ".".join(str(p) for p in path)
    got = _kind(deepest.get("input"))
    if deepest["loc"] and deepest["loc"][-1] == "[key]":  # a sample that is no object has no loc
        return Problem(field, "column names must be strings")
    if deepest["type"] == "invalid_key":
        return Problem(field, "keys must be strings")
    if deepest["type"] == "missing":
        return Problem(field, "missing")
    if deepest["type"] == AUDIT_LIMIT_ERROR:
        return Problem(deepest["ctx"]["column"], deepest["ctx"]["message"])
    if path == ("group",):
        value = deepest.get("input")
        if isinstance(value, str):
            got = "a NUL character" if "\x00" in value else f"{len(value)} characters"
        wanted = f"a string of 1 to {MAX_GROUP_NAME} characters without NUL"
        return Problem("group", f"must be {wanted}, got {got}")
    same = [err for err in errors if _field_path(err["loc"]) == path]
    members = [_MEMBERS[m] for m in (_member(err["loc"]) for err in same) if m in _MEMBERS]
    if len(same) > 1 and len(members) == len(same):
        return Problem(field, f"must be {' or '.join(members)}, got {got}")
    if deepest["type"] == "dict_type" and _member(deepest["loc"]) == "list[ChatMessage]":
        return Problem(field, f"a chat message must be an object, got {got}")
    expected = _TYPES.get(deepest["type"])
    if expected is not None:
        return Problem(field, f"must be {expected}, got {got}")
    return Problem(field, f"{deepest['msg']} (got {got})")


def _is_member(part: Any) -> bool:
    return isinstance(part, str) and (part in _MEMBERS or "[" in part or part in {"none", "ChatMessage"})


def _member(loc: Sequence[Any]) -> str | None:
    """The last union member a location passed through (``str``, ``list[ChatMessage]`` …)."""
    return next((p for p in reversed(loc) if _is_member(p)), None)


def _field_path(loc: Sequence[Any]) -> tuple[Any, ...]:
    path = tuple(p for p in loc if not _is_member(p))
    return path[1:] if path[:1] == ("columns",) else path
