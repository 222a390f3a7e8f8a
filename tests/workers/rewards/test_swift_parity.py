"""Value parity of the five rule rewards with ms-swift 4.6's own (``swift/rewards/orm.py``).

ms-swift pins its own transformers and trl, so it runs in a venv of its own (``tests/swift_venv.py``);
``swift_reference.py`` runs ms-swift's ORM classes there on the inputs below.

Values must agree to 1e-9. The one documented difference: where ms-swift gives 0.0 for an empty or
unparseable reference solution, rewardq's ``accuracy`` and ``cosine`` say ``unscorable``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions
from rewardq.workers.rewards.rules.accuracy import AccuracyReward
from rewardq.workers.rewards.rules.cosine import CosineReward
from rewardq.workers.rewards.rules.format import FormatReward
from rewardq.workers.rewards.rules.repetition import RepetitionReward
from rewardq.workers.rewards.rules.soft_overlong import SoftOverlongReward
from tests.swift_venv import swift_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REFERENCE = Path(__file__).with_name("swift_reference.py")


@dataclass(frozen=True)
class Case:
    """One input; ``unscorable`` marks the solutions ms-swift scores 0.0 and rewardq calls unscorable."""

    completion: str
    solution: str = ""
    unscorable: bool = False


MATH = [
    Case("<think>2+2 is 4</think><answer>4</answer>", "4"),
    Case("<think>hm</think><answer>5</answer>", "4"),
    Case("So the answer is $\\boxed{4}$.", "4"),
    Case("So the answer is $\\boxed{5}$.", "4"),
    Case("\\boxed{\\frac{1}{2}}", "$0.5$"),
    Case("<answer>\\frac{1}{2}</answer>", "<answer>$\\frac12$</answer>"),
    Case("<answer>0.5</answer>", "The answer is <answer>$\\frac{1}{2}$</answer>."),
    Case("I think it is 4", "4"),
    Case("<answer>7", "7"),
    Case("$x^2+2x+1$", "$(x+1)^2$"),
    Case("\\boxed{(x+1)^2}", "$x^2+2x+1$"),
    Case("\\boxed{\\{1,2\\}}", "$\\{2,1\\}$"),
    Case("\\boxed{\\sqrt{2}}", "$\\sqrt 2$"),
    Case("first \\boxed{3}, then \\boxed{4}", "4"),
    Case("first \\boxed{4}, then \\boxed{3}", "4"),
    Case("\\boxed{10\\%}", "10%"),
    Case("\\boxed{5\\text{ cm}}", "5"),
    Case("<answer>x = 2</answer>", "2"),
    Case("\\boxed{10^6}", "1000000"),
    Case("<answer>  -3 </answer>", "$-3$"),
    Case("\\boxed{", "3"),
    Case("\\boxed{}", "3"),
    Case("", "1"),
    Case("$\\boxed{2}$", "<answer>2</answer>"),
    Case("\\boxed{3}", "", unscorable=True),
    Case("\\boxed{3}", "   ", unscorable=True),
    Case("\\boxed{3}", "no numbers here", unscorable=True),
    Case("<answer>3</answer>", "<answer></answer>", unscorable=True),
    Case("<answer>\\frac{1}{2}</answer>", "<answer>\\frac12</answer>", unscorable=True),
    Case("\\boxed{A}", "A", unscorable=True),
]
FORMAT = [
    "<think>a</think><answer>b</answer>",
    "<think>a</think>\n\n<answer>b</answer>",
    "<think>\nmulti\nline\n</think>\n<answer>\n42\n</answer>",
    "<think>a</think><answer>b</answer>\n",
    " <think>a</think><answer>b</answer>",
    "<think>a</think>text<answer>b</answer>",
    "<think>a</think><answer>b</answer><answer>c</answer>",
    "<answer>b</answer>",
    "<think>a</think>",
    "",
]
REPETITIVE = [
    "",
    "one two",
    "one two three",
    "a b c a b c a b c",
    "The the THE the the",
    "hello\nhello\thello  hello",
    "foo bar baz " * 50,
    "every word in this sentence is different from all others",
    "Ünïcödé wörds ünïcödé WÖRDS ünïcödé wörds",
]
Length = int | list[int]  # a number of tokens, or one per turn
LENGTHS: list[Length] = [0, 1, 100, 256, 383, 384, 385, 448, 511, 512, 513, 700, 1024, 2048, [100, 300]]


def token_ids(length: Length) -> list[int] | list[list[int]]:
    """``length`` token ids, or one list of ids per turn."""
    if isinstance(length, list):
        return [list(range(n)) for n in length]
    return list(range(length))


@dataclass(frozen=True)
class Run:
    """One reward configuration over a list of samples, for rewardq and ms-swift alike."""

    reward: type[Reward]
    options: dict[str, Any]
    samples: list[Sample]
    unscorable: list[bool]

    def swift(self) -> dict[str, Any]:
        """The run as ``swift_reference.py`` takes it: ms-swift's name, args and call arguments."""
        rewardq_only = {"tokenizer", "timeout_seconds", "pattern"}
        args = self.reward.Options(**self.options).model_dump(exclude=rewardq_only)
        kwargs: dict[str, Any] = {"completions": [s.completion_text for s in self.samples]}
        if self.reward in (AccuracyReward, CosineReward):
            kwargs["solution"] = [s.columns["solution"] for s in self.samples]
        if self.reward in (CosineReward, SoftOverlongReward):
            kwargs["response_token_ids"] = [s.columns["completion_ids"] for s in self.samples]
        return {"orm": self.reward.kind, "args": args, "kwargs": kwargs}


def math_run(reward: type[Reward], options: dict[str, Any], lengths: list[Length]) -> Run:
    cases = [(case, length) for case in MATH for length in lengths]
    samples = [
        Sample(completion=c.completion, columns={"solution": c.solution, "completion_ids": token_ids(n)})
        for c, n in cases
    ]
    return Run(reward, options, samples, [case.unscorable for case, _ in cases])


def text_run(reward: type[Reward], options: dict[str, Any], texts: list[str]) -> Run:
    return Run(reward, options, [Sample(completion=t) for t in texts], [False] * len(texts))


def length_run(options: dict[str, Any]) -> Run:
    samples = [Sample(completion="x", columns={"completion_ids": token_ids(n)}) for n in LENGTHS]
    return Run(SoftOverlongReward, options, samples, [False] * len(samples))


COSINE_CUSTOM = {
    "cosine_max_len": 1000,
    "cosine_min_len_value_wrong": -1.0,
    "cosine_max_len_value_wrong": -0.25,
    "cosine_min_len_value_correct": 2.0,
    "cosine_max_len_value_correct": 0.0,
}
RUNS = {
    "accuracy": math_run(AccuracyReward, {}, [0]),
    "format": text_run(FormatReward, {}, FORMAT),
    "repetition": text_run(RepetitionReward, {}, REPETITIVE),
    "repetition-2-grams": text_run(
        RepetitionReward, {"repetition_n_grams": 2, "repetition_max_penalty": -0.5}, REPETITIVE
    ),
    "repetition-1-gram": text_run(RepetitionReward, {"repetition_n_grams": 1}, REPETITIVE),
    "cosine": math_run(CosineReward, {}, [0, 256, 512, 768, [100, 300]]),
    "cosine-custom": math_run(CosineReward, COSINE_CUSTOM, [1, 500, 1000, 2500]),
    "soft_overlong": length_run({}),
    "soft_overlong-long": length_run({"soft_max_length": 1024, "soft_cache_length": 512}),
}


def reference(python: Path, mode: str, runs: list[dict[str, Any]] | None = None) -> Any:
    done = subprocess.run(
        [str(python), str(REFERENCE), mode],
        input=json.dumps(runs) if runs is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def python() -> Path:
    return swift_python()


@pytest.fixture(scope="module")
def swift_values(python: Path) -> dict[str, list[float]]:
    """ms-swift's values for every run, from one run of the reference script."""
    values = reference(python, "rewards", [run.swift() for run in RUNS.values()])
    return dict(zip(RUNS, values, strict=True))


@pytest.fixture
def build() -> Iterator[Any]:
    made: list[Reward] = []

    def _build(run: Run) -> Reward:
        reward = run.reward("parity", run.reward.Options(**run.options))
        made.append(reward)
        return reward

    yield _build
    for reward in made:
        reward.close()


@pytest.mark.parametrize("name", list(RUNS))
def test_values_match_ms_swift(name: str, swift_values: dict[str, list[float]], build: Any) -> None:
    run = RUNS[name]
    ours = build(run).score(run.samples)
    theirs = swift_values[name]
    assert len(ours) == len(theirs) == len(run.samples)
    for sample, unscorable, score, expected in zip(run.samples, run.unscorable, ours, theirs, strict=True):
        where = f"{sample.completion_text[:60]!r} / {sample.columns.get('solution')!r}"
        if unscorable:
            assert score.status == "unscorable", where
            if run.reward is AccuracyReward:
                assert expected == 0.0, where
        else:
            assert score.status == "ok", f"{where}: {score}"
            assert score.value == pytest.approx(expected, abs=1e-9, rel=0), where


def test_defaults_match_ms_swift(python: Path) -> None:
    """rewardq's defaults are ms-swift's, whose None lengths mean max_completion_length.

    The exception: ms-swift has no soft_cache_length default (it refuses to start without one);
    rewardq's 128 lets ``soft_overlong`` run with no rewards file.
    """
    theirs = reference(python, "defaults")
    fill = theirs.pop("max_completion_length")
    assert theirs.pop("soft_cache_length") is None
    options: dict[str, RewardOptions] = {
        "cosine": CosineReward.Options(),
        "repetition": RepetitionReward.Options(),
        "soft": SoftOverlongReward.Options(),
    }
    for name, default in theirs.items():
        ours = getattr(options[name.split("_")[0]], name)
        assert ours == (fill if default is None else default), name
