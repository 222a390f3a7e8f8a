"""Whether a program's output is right, by the rules of verl's ``prime_code`` (APPS's ``testing_util``).

Standard output, against the expected text, passes when any of these holds, tried in prime_code's order:

1. the output's lines, joined, equal the expected text once both are stripped at the ends, or do so with
   each output line stripped too;
2. the output's lines equal the expected text's non-empty lines, each stripped (the output's empty lines
   dropped, or not);
3. the output's non-empty lines and the expected non-empty lines are as many, not all pairs are digit
   strings, and every pair parses as floats within ``numpy.allclose``'s tolerance (relative 1e-5, absolute
   1e-8 of the expected value).

A return value passes when it equals the expected value, or the expected value's first element (APPS wraps
return values in a list). Both sides are compared as JSON values (tuples are lists, so a list of tuples
equals a list of lists; object keys are strings, as prime_code's int-key fix-up intends): the value reaches
the comparison as the JSON text the harness printed, so an object that claims equality with anything does
not pass (prime_code compares live objects).
"""

from __future__ import annotations

import json
from typing import Any

RTOL = 1e-5  # numpy.allclose's defaults, which prime_code uses
ATOL = 1e-8


def stdout_matches(output: str, expected: str) -> bool:
    """Whether a program's standard output passes against the expected output."""
    lines = output.splitlines()
    want = expected.strip()
    if "\n".join(lines).strip() == want or "\n".join(line.strip() for line in lines).strip() == want:
        return True
    expected_lines = [line.strip() for line in expected.split("\n") if line]
    got = [line for line in lines if line]
    if lines == expected_lines or got == expected_lines:
        return True
    return _floats_close(got, expected_lines)


def _floats_close(got: list[str], expected: list[str]) -> bool:
    if len(got) != len(expected) or all(
        a.isdigit() and b.isdigit() for a, b in zip(got, expected, strict=True)
    ):
        return False
    try:
        pairs = [(float(a), float(b)) for a, b in zip(got, expected, strict=True)]
    except ValueError:
        return False
    return all(a == b or abs(a - b) <= ATOL + RTOL * abs(b) for a, b in pairs)


def value_matches(output_json: str, expected: Any) -> bool:
    """Whether a call's return value (the JSON text the harness printed) passes against the expected value."""
    try:
        value = json.loads(output_json)
        expected = json.loads(json.dumps(expected))
    except (ValueError, TypeError, RecursionError):
        return False
    return bool(value == expected) or (isinstance(expected, list) and bool(expected) and value == expected[0])
