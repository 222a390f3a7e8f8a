"""The code reward's pure parts: reading the tests column, finding the program, comparing outputs as
verl's prime_code does, and the call-based harness (run here with the plain interpreter, no sandbox)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rewardq.workers.rewards.code.cases import TestCase, Tests, read_tests
from rewardq.workers.rewards.code.compare import stdout_matches, value_matches
from rewardq.workers.rewards.code.harness import call_script, read_call
from rewardq.workers.rewards.code.programs import extract_program

STDIN_TESTS = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}


def test_tests_are_read_from_an_object_or_a_json_string_of_one() -> None:
    expected = Tests((TestCase("1 2\n", "3\n"), TestCase("3 4\n", "7\n")))
    assert read_tests(STDIN_TESTS, "tests") == expected
    assert read_tests(json.dumps(STDIN_TESTS), "tests") == expected


def test_lists_of_lines_are_joined_with_newlines() -> None:
    tests = read_tests({"inputs": [["1", "2"]], "outputs": [["3", "4"]]}, "tests")
    assert tests == Tests((TestCase("1\n2", "3\n4"),))


def test_call_based_inputs_are_argument_lists_or_one_json_value_per_line() -> None:
    apps = read_tests({"fn_name": "add", "inputs": [[1, 2]], "outputs": [[3]]}, "tests")
    prime = read_tests({"fn_name": "add", "inputs": ["1\n2"], "outputs": ["3"]}, "tests")
    assert apps == Tests((TestCase([1, 2], [3]),), "add")
    assert prime == Tests((TestCase([1, 2], 3),), "add")


def test_integers_past_64_bits_survive() -> None:
    tests = read_tests(json.dumps({"fn_name": "f", "inputs": [[2**70]], "outputs": [[2**71]]}), "tests")
    assert isinstance(tests, Tests) and tests.cases[0].input == [2**70]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no 'tests' column"),
        ("{not json", "column 'tests' is not JSON"),
        ([1, 2], "must be an object"),
        ({"inputs": ["1"]}, "'inputs' and 'outputs' lists"),
        ({"inputs": ["1"], "outputs": []}, "1 inputs but 0 outputs"),
        ({"inputs": [], "outputs": []}, "no test cases"),
        ({"inputs": [1], "outputs": ["1"]}, "an input must be a string"),
        ({"fn_name": "a b", "inputs": [[1]], "outputs": [1]}, "'fn_name' must be a Python identifier"),
        ({"fn_name": "f", "inputs": ["{"], "outputs": [1]}, "not one JSON value per line"),
    ],
)
def test_missing_or_malformed_tests_say_why_naming_the_column(value: object, reason: str) -> None:
    problem = read_tests(value, "tests")
    assert isinstance(problem, str) and reason in problem


def test_the_last_python_block_is_the_program() -> None:
    text = "First:\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone."
    assert extract_program(text, "python") == "print(2)"


def test_a_tagged_block_wins_over_untagged_ones_and_other_languages_are_skipped() -> None:
    text = "```python\nprint(1)\n```\n```\nplain\n```\n```bash\nls\n```"
    assert extract_program(text, "python") == "print(1)"
    assert extract_program("```\nprint(3)\n```", "python") == "print(3)"


def test_without_a_block_the_whole_completion_is_the_program() -> None:
    assert extract_program("print(input())\n", "python") == "print(input())\n"


def test_a_block_left_open_runs_to_the_end() -> None:
    assert extract_program("Here:\n```python\nprint(1)\nprint(2)", "python") == "print(1)\nprint(2)"


def test_a_longer_fence_holds_a_shorter_one() -> None:
    text = "````python\ns = '''\n```\n'''\nprint(s)\n````"
    assert extract_program(text, "python") == "s = '''\n```\n'''\nprint(s)"


@pytest.mark.parametrize("text", ["", "   \n", "```python\n\n```", "```bash\nls\n```"])
def test_no_program(text: str) -> None:
    assert extract_program(text, "python") is None


def test_cpp_blocks() -> None:
    assert extract_program("```cpp\nint main(){}\n```", "cpp") == "int main(){}"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("3\n", "3"),  # ends stripped
        ("  3  \n 4\n", "3\n4\n"),  # each line stripped
        ("1\n\n2\n", "1\n2"),  # empty lines dropped
        ("0.3333333\n", "0.33333333333"),  # floats within numpy.allclose's tolerance
        ("1e9\n", "1000000001"),  # relative tolerance 1e-5
        ("inf\n", "inf"),
    ],
)
def test_outputs_that_pass_as_in_prime_code(output: str, expected: str) -> None:
    assert stdout_matches(output, expected)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("4\n", "3"),
        ("3 4\n", "3\n4"),  # tokens are not re-split across lines
        ("0.33\n", "0.3333"),  # beyond the tolerance
        ("1.0 2.0\n", "1 2"),  # a line of several numbers is not compared as floats
        ("nan\n", "1.5"),
        ("10\n", "010"),  # digit strings compare as text
        ("", "3"),
    ],
)
def test_outputs_that_fail_as_in_prime_code(output: str, expected: str) -> None:
    assert not stdout_matches(output, expected)


def test_return_values_compare_as_json_and_against_apps_wrapped_lists() -> None:
    assert value_matches("[[1, 2], [3, 4]]", [[1, 2], [3, 4]])
    assert value_matches("3", [3])  # APPS wraps the expected value in a list
    assert value_matches('{"1": "a"}', {1: "a"})  # keys compare as strings
    assert not value_matches("3.0000001", 3)
    assert not value_matches("not json", 3)


def _call(program: str, fn_name: str, args: list[object]) -> tuple[str, str]:
    script = call_script(program, fn_name, args, prelude=True)
    return read_call(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout)


def test_the_harness_calls_a_function_or_a_solution_method_and_hides_the_programs_prints() -> None:
    assert _call("def add(a, b):\n    print('noise')\n    return (a + b, sqrt(4))", "add", [1, 2]) == (
        "value",
        "[3, 2.0]",
    )
    assert _call("class Solution:\n    def add(self, a, b):\n        return a + b", "add", [1, 2]) == (
        "value",
        "3",
    )


def test_the_harness_reports_an_exception_or_a_missing_function() -> None:
    assert _call("def f(a):\n    return 1 / a", "f", [0]) == ("error", "ZeroDivisionError: division by zero")
    assert _call("def g():\n    pass", "f", []) == ("error", "KeyError: 'f'")
    assert _call("import os\ndef f():\n    os._exit(0)", "f", [])[0] == "error"


def test_an_object_that_claims_equality_does_not_pass() -> None:
    cheat = "class Any:\n    def __eq__(self, other):\n        return True\ndef f():\n    return Any()"
    kind, text = _call(cheat, "f", [])
    assert kind == "error" and "not JSON serializable" in text
