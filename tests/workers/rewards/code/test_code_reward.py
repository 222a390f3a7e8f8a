"""The code reward with the real local sandbox: values, unscorable samples, all_or_nothing, max_tests,
fail_fast, call-based problems, C++, bad options as one line naming the field, and ``rewardq score`` on a
JSONL file with a ``tests`` column."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewardq import Settings
from rewardq.wire.errors import ConfigError
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.code.reward import CodeReward
from rewardq.workers.rewards.config import RewardsConfig
from tests.workers.test_cli import rewardq, write_jsonl

ADD = {"inputs": ["1 2\n", "4 4\n", "5 5\n", "0 0\n"], "outputs": ["3\n", "8\n", "10\n", "0\n"]}
RIGHT = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
HALF = "```python\na, b = map(int, input().split())\nprint(a + b if a % 2 else 1 / 0)\n```"


@pytest.fixture
def resources() -> Iterator[WorkerResources]:
    resources = WorkerResources(Settings.from_env({}))
    yield resources
    resources.close()


def _score(resources: WorkerResources, samples: list[Sample], **options: object) -> list[Score]:
    reward = CodeReward("code", CodeReward.Options(**options))
    reward.setup(resources)
    try:
        return list(reward.score(samples))
    finally:
        reward.close()


def _sample(completion: str, tests: object = ADD) -> Sample:
    return Sample(completion=completion, columns={"tests": tests})


def test_the_value_is_the_share_of_cases_passed_and_raw_says_why_each_failed(
    resources: WorkerResources,
) -> None:
    right, half = _score(resources, [_sample(RIGHT), _sample(HALF)])
    assert (right.status, right.value) == ("ok", 1.0)
    assert (half.status, half.value) == ("ok", 0.5)
    raw = json.loads(half.raw)
    assert raw["cases"] == ["passed", "runtime_error", "passed", "runtime_error"]
    assert raw["first_failure"]["verdict"] == "runtime_error"
    assert "ZeroDivisionError" in raw["first_failure"]["detail"]


def test_all_or_nothing_and_max_tests(resources: WorkerResources) -> None:
    [whole] = _score(resources, [_sample(HALF)], all_or_nothing=True)
    [first_one] = _score(resources, [_sample(HALF)], max_tests=1)
    assert whole.value == 0.0
    assert first_one.value == 1.0 and json.loads(first_one.raw)["of"] == 1


def test_fail_fast_skips_the_cases_not_started_after_a_failure(resources: WorkerResources) -> None:
    wrong_first = "```python\nimport sys\nsys.exit(1)\n```"
    [score] = _score(resources, [_sample(wrong_first)], fail_fast=True, parallel=1)
    assert json.loads(score.raw)["cases"] == ["runtime_error", "skipped", "skipped", "skipped"]


def test_samples_without_tests_or_code_are_unscorable(resources: WorkerResources) -> None:
    no_tests = Sample(completion=RIGHT)
    no_code = _sample("```python\n\n```")
    bad_tests = _sample(RIGHT, '{"inputs": ["1"]}')
    scores = _score(resources, [no_tests, no_code, bad_tests])
    assert [s.status for s in scores] == ["unscorable"] * 3
    assert [s.error for s in scores] == [
        "no 'tests' column: code needs the test cases",
        "the completion has no python program",
        "column 'tests' must have 'inputs' and 'outputs' lists",
    ]


def test_call_based_problems_in_both_formats(resources: WorkerResources) -> None:
    program = "```python\nclass Solution:\n    def twice(self, xs):\n        return [2 * x for x in xs]\n```"
    apps = {"fn_name": "twice", "inputs": [[[1, 2]], [[]]], "outputs": [[[2, 4]], [[]]]}
    prime = {"fn_name": "twice", "inputs": ["[1, 2]", "[3]"], "outputs": ["[2, 4]", "[7]"]}
    scores = _score(resources, [_sample(program, apps), _sample(program, prime)], tests_field="tests")
    assert [s.value for s in scores] == [1.0, 0.5]


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_cpp_programs_compile_once_and_run_per_case(resources: WorkerResources) -> None:
    right = (
        "```cpp\n#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b; }\n```"
    )
    broken = "```cpp\nint main() { return x; }\n```"
    right_score, broken_score = _score(resources, [_sample(right), _sample(broken)], language="cpp")
    assert right_score.value == 1.0
    assert broken_score.value == 0.0
    assert json.loads(broken_score.raw)["first_failure"]["verdict"] == "compile_error"


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ("time_limit = 0", "time_limit"),
        ('backend = "sandbox_fusion"', "url"),
        ('url = "http://sandbox:8080"', "url"),
        ('language = "cobol"', "language"),
    ],
)
def test_bad_options_are_one_line_naming_the_field(tmp_path: Path, table: str, field: str) -> None:
    path = tmp_path / "rewards.toml"
    path.write_text(f'[rewards.code]\nkind = "code"\n{table}\n')
    with pytest.raises(ConfigError) as e:
        RewardsConfig.load(path).build("code")
    assert "\n" not in str(e.value) and field in str(e.value)


@pytest.mark.slow
def test_rescoring_a_jsonl_with_a_tests_column(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"prompt": "add", "completion": RIGHT, "tests": ADD},
            {"prompt": "add", "completion": HALF, "tests": ADD},
        ],
    )
    out = tmp_path / "out.jsonl"
    rewards = tmp_path / "rewards.toml"
    rewards.write_text('[rewards.code]\nkind = "code"\n')
    args = [
        "score",
        str(source),
        "-r",
        "code",
        "--out",
        str(out),
        "--run-id",
        "code-rescore",
        "--no-progress",
    ]
    rewardq(*args, env={"REWARDQ_REWARDS": str(rewards)})
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [line["rewards"]["code"] for line in lines] == [1.0, 0.5]
