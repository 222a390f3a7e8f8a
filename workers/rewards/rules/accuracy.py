"""The ``accuracy`` reward: ms-swift's ``MathAccuracy``, math-verify equivalence with the solution.

Each sample's ``columns["solution"]`` is the reference. As in ms-swift 4.6, the text inside the first
``<answer>…</answer>`` of the solution (else the whole solution) is parsed with math-verify's default
extraction; the completion's ``<answer>`` part is parsed the same way, a completion without the tag
with ms-swift's LaTeX-only configuration (boxed answers first); 1.0 when math-verify verifies them
equal, else 0.0. Where ms-swift silently gives 0.0, rewardq says why: no, empty or unparseable
solution → ``unscorable``; a math-verify step that ran out of time → ``timeout``.

math-verify's timeouts use ``signal.alarm``, which only works on a process's main thread: the kind runs
in a child process of its own (``runs_in = "child"``, :mod:`rewardq.workers.runtime.child`), where
``score`` is called on the main thread whatever the worker's pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

from pydantic import Field

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score


class AccuracyReward(Reward):
    """1.0 when the completion's answer is mathematically equal to the reference solution, else 0.0."""

    kind = "accuracy"
    version = "1"
    timeout_default = 120.0  # math-verify's own limit is 5 s per parse or comparison, several per sample

    class Options(RewardOptions):
        timeout_seconds: int = Field(
            5, ge=1, description="math-verify's limit on each parse and each comparison of a sample"
        )

    options: Options

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        scores: list[Score | None] = [reference_problem(s.columns.get("solution")) for s in samples]
        todo = [i for i, score in enumerate(scores) if score is None]
        pairs = [(samples[i].completion_text, samples[i].columns["solution"]) for i in todo]
        for i, score in zip(todo, check_chunk(pairs, self.options.timeout_seconds), strict=True):
            scores[i] = score
        return [score for score in scores if score is not None]


def reference_problem(solution: Any) -> Score | None:
    """Why a sample's ``solution`` column cannot be checked against, or None when it can."""
    if solution is None:
        return Score.unscorable("no 'solution' column: accuracy needs the reference answer")
    if not isinstance(solution, str):
        return Score.failed(f"column 'solution' must be a string, got {type(solution).__name__}")
    if not solution.strip():
        return Score.unscorable("the 'solution' column is empty")
    return None


def check_chunk(pairs: list[tuple[str, str]], timeout: int) -> list[Score]:
    """Check (completion, solution) pairs; must run on a main thread. One pair's error fails it alone."""
    scores = []
    for completion, solution in pairs:
        try:
            scores.append(check_answer(completion, solution, timeout))
        except Exception as e:  # an unexpected error fails this sample, not the chunk
            scores.append(Score.failed(f"{type(e).__name__}: {e}"))
    return scores


def check_answer(completion: str, solution: str, timeout: int) -> Score:
    """ms-swift's ``MathAccuracy`` for one sample, with its silent 0.0 cases made explicit."""
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig
    from math_verify.errors import TimeoutException

    try:
        gold = parse_answer(answer_part(solution)[0], timeout)
        if not gold:
            return Score.unscorable("math-verify finds no answer in the 'solution' column")
        text, tagged = answer_part(completion)
        if tagged:
            answer = parse_answer(text, timeout)
        else:
            normalization = NormalizationConfig(
                nits=False, malformed_operators=False, basic_latex=True, boxed=True, units=True
            )
            latex = LatexExtractionConfig(
                normalization_config=normalization, boxed_match_priority=0, try_extract_without_anchor=False
            )
            answer = parse_answer(text, timeout, extraction_config=[latex])
        return verify_answer(gold, answer, timeout)
    except TimeoutException:
        return Score(None, "timeout", f"a math-verify parse or comparison took more than {timeout}s")


def answer_part(text: str) -> tuple[str, bool]:
    """The stripped inside of the first ``<answer>`` tag and True, or the whole text and False.

    What ``re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)`` finds (ms-swift's extraction), in
    linear time: the regex retries from every ``<answer>`` when no ``</answer>`` follows (quadratic on
    ``"<answer>" * k``), but if none follows the first, none follows a later one.
    """
    start = text.find("<answer>")
    end = text.find("</answer>", start + len("<answer>")) if start >= 0 else -1
    if end < 0:
        return text, False
    return text[start + len("<answer>") : end].strip(), True


def parse_answer(text: str, timeout: int, **config: Any) -> list[Any]:
    """math-verify's ``parse`` as ms-swift calls it, but letting a timeout through instead of ``[]``."""
    from math_verify import parse

    try:
        return list(
            parse(text, extraction_mode="first_match", parsing_timeout=timeout, raise_on_error=True, **config)
        )
    except Exception:  # parse without raise_on_error turns every error into "nothing parsed"
        return []


def verify_answer(gold: list[Any], answer: list[Any], timeout: int) -> Score:
    """math-verify's ``verify(gold, answer)``: any equal (gold, answer) pair, a timed-out pair unequal.

    The pairs are compared one by one, in verify's order, so that a timeout can be told apart from a
    plain mismatch: it becomes ``timeout`` only when no other pair is equal.
    """
    from math_verify import verify
    from math_verify.errors import TimeoutException

    timed_out: TimeoutException | None = None
    for g, a in product(gold, answer):
        try:
            if verify(g, a, timeout_seconds=timeout, raise_on_error=True):
                return Score.ok(1.0)
        except TimeoutException as e:
            timed_out = e
        except Exception:  # verify without raise_on_error counts an error as unequal
            continue
    if timed_out is not None:
        raise timed_out
    return Score.ok(0.0)
