"""A sample's test cases, in the format verl's ``prime_code``, APPS and TACO use.

The ``tests`` column is a JSON object (or a string holding one) with ``inputs`` and ``outputs`` lists of
equal length. Without ``fn_name`` each case is standard input → expected standard output (a string, or a
list of lines joined with newlines). With ``fn_name`` a case is call-based: its input is the argument list
(APPS, TACO), or a string of one JSON value per line, each an argument (prime_code's data); its output is
the expected return value, or a JSON string of it (prime_code's data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TestCase:
    """One case: standard input and expected output, or (call-based) arguments and expected value."""

    __test__ = False  # not a pytest class

    input: Any  # str (stdin) or list (arguments)
    expected: Any  # str (stdout) or any JSON value (return value)


@dataclass(frozen=True)
class Tests:
    """A problem's cases; ``fn_name`` is the function a call-based problem calls, None for stdin ones."""

    __test__ = False

    cases: tuple[TestCase, ...]
    fn_name: str | None = None


def read_tests(value: Any, column: str) -> Tests | str:
    """The tests in a column's value, or why there are none (a one-line reason naming the column)."""
    if value is None:
        return f"no {column!r} column: code needs the test cases"
    if isinstance(value, str | bytes):  # json, not orjson: call-based values may hold integers past 64 bits
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            return f"column {column!r} is not JSON: {e}"
    if not isinstance(value, dict):
        return f"column {column!r} must be an object with 'inputs' and 'outputs', got {type(value).__name__}"
    inputs, outputs, fn_name = value.get("inputs"), value.get("outputs"), value.get("fn_name")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        return f"column {column!r} must have 'inputs' and 'outputs' lists"
    if len(inputs) != len(outputs):
        return f"column {column!r} has {len(inputs)} inputs but {len(outputs)} outputs"
    if not inputs:
        return f"column {column!r} has no test cases"
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        return f"column {column!r}: 'fn_name' must be a Python identifier, got {fn_name!r}"
    try:
        if fn_name is None:
            cases = tuple(
                TestCase(_text(i, "input"), _text(o, "output")) for i, o in zip(inputs, outputs, strict=True)
            )
        else:
            cases = tuple(TestCase(_arguments(i), _value(o)) for i, o in zip(inputs, outputs, strict=True))
    except ValueError as e:
        return f"column {column!r}: {e}"
    return Tests(cases, fn_name)


def _text(value: Any, what: str) -> str:
    """A standard input or output: a string, or a list of lines (joined with newlines, as prime_code does)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    raise ValueError(f"an {what} must be a string or a list of strings, got {type(value).__name__}")


def _arguments(value: Any) -> list[Any]:
    """A call's arguments: a list as is, or a string of one JSON value per line (prime_code)."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            return [json.loads(line) for line in value.split("\n")]
        except json.JSONDecodeError as e:
            raise ValueError(f"a call-based input is not one JSON value per line: {e}") from e
    raise ValueError(f"a call-based input must be a list of arguments, got {type(value).__name__}")


def _value(value: Any) -> Any:
    """An expected return value: a JSON string is decoded (prime_code), anything else is the value."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
