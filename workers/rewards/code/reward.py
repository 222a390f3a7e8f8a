"""The ``code`` reward: the fraction of a sample's test cases its program passes (or 1.0 only when it
passes them all, ``all_or_nothing``, verl ``prime_code``'s value).

A chunk's cases run concurrently on a thread pool of ``parallel`` threads, each case a fresh sandbox
(:mod:`.runners`) or a Sandbox Fusion request (:mod:`.fusion`). A program that fails, crashes, runs out of
time, memory or output fails that case and the sample is still ``ok``; a sample with no tests or no program
is ``unscorable``; ``error`` only when the sandbox itself could not run. The audit's ``raw`` holds the
per-case verdicts in a bounded JSON (:func:`summary`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import orjson
from pydantic import Field, ValidationInfo, field_validator

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.process.sandbox import Limits, Outcome
from rewardq.workers.rewards.base import Reward, RewardOptions, Score
from rewardq.workers.rewards.code.cases import TestCase, Tests, read_tests
from rewardq.workers.rewards.code.compare import stdout_matches, value_matches
from rewardq.workers.rewards.code.harness import call_script, read_call, stdin_script
from rewardq.workers.rewards.code.programs import Language, extract_program
from rewardq.workers.rewards.code.runners import COMPILE_FAILED, Runner, SandboxBroken

log = logging.getLogger(__name__)

CASES_KEPT = 64  # per-case verdicts kept in the audit's raw JSON
DETAIL_LIMIT = 200  # characters of a failure's detail
SHOWN = 60  # characters of an expected and an actual output in a wrong answer's detail

Verdict = Literal[
    "passed",
    "wrong_answer",
    "time_limit",
    "memory_limit",
    "output_limit",
    "runtime_error",
    "compile_error",
    "skipped",
]


@dataclass(frozen=True)
class CaseResult:
    """One case's verdict and, for a failure, a short why (an exception's last line, a limit)."""

    verdict: Verdict
    detail: str = ""


class CodeOptions(RewardOptions):
    """Where programs run, the tests' column, the limits of one case and how the value is made."""

    backend: Literal["local", "sandbox_fusion"] = "local"
    url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+", validate_default=True)
    """The Sandbox Fusion server (``http://host:8080``); only with ``backend = "sandbox_fusion"``."""
    language: Language = "python"
    tests_field: str = "tests"
    time_limit: Annotated[float, Field(gt=0, le=600)] = 6.0
    """Seconds per test case (wall clock)."""
    memory_mb: Annotated[int, Field(ge=32, le=65536)] = 1024
    max_output_kb: Annotated[int, Field(ge=1, le=1024 * 1024)] = 1024
    max_tests: Annotated[int, Field(ge=1)] | None = None
    """Run only the first ``max_tests`` cases of a sample (all when unset)."""
    all_or_nothing: bool = False
    fail_fast: bool = False
    """Skip a sample's cases not yet started once one has failed (a skipped case counts as failed)."""
    parallel: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Cases in flight per reward (local: sandboxes at once; Sandbox Fusion: requests at once); the
    number of CPUs when unset."""
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    """Sandbox Fusion: retries of a request on connection errors, timeouts and 5xx."""
    prelude: bool = True
    """Run Python programs after prime_code's import prelude (``from math import *`` …), as prime_code
    does."""

    @field_validator("url")
    @classmethod
    def _backend_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        backend = info.data.get("backend")
        if backend == "sandbox_fusion" and url is None:
            raise ValueError("backend 'sandbox_fusion' needs the server's url")
        if backend == "local" and url is not None:
            raise ValueError("only backend 'sandbox_fusion' takes a url")
        return url


class CodeReward(Reward):
    """Runs the completion's program against the sample's test cases; the value is the share passed."""

    kind = "code"
    version = "1"
    Options = CodeOptions
    timeout_default: ClassVar[float] = 300.0
    """Seconds a chunk may take by default: flat, since it depends on the chunk's cases, not only on the
    options."""

    options: CodeOptions

    def __init__(self, name: str, options: RewardOptions) -> None:
        super().__init__(name, options)
        self._runner: Runner | None = None
        self._pool: ThreadPoolExecutor | None = None

    def setup(self, resources: WorkerResources) -> None:
        options = self.options
        workers = options.parallel or os.cpu_count() or 1
        if options.backend == "local":
            from rewardq.workers.rewards.code.runners import LocalRunner

            self._runner = LocalRunner(options.language)
        else:
            from rewardq.workers.process.loop import LOOP_KEY, LoopThread
            from rewardq.workers.rewards.code.fusion import FusionRunner

            assert options.url is not None  # the options' validator
            runner = FusionRunner(
                options.url,
                options.language,
                resources.shared(LOOP_KEY, LoopThread),
                time_limit=options.time_limit,
                max_concurrency=workers,
                max_retries=options.max_retries,
            )
            self._runner = runner
            runner.check()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"code-{self.name}")

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        runner, pool = self._runner, self._pool
        if runner is None or pool is None:
            raise RewardSetupError(f"reward {self.name!r} was not set up")
        options = self.options
        limits = Limits(
            time_s=options.time_limit, memory_mb=options.memory_mb, output_kb=options.max_output_kb
        )
        jobs: list[tuple[Tests, list[Future[CaseResult]]] | Score] = []
        for sample in samples:
            tests = read_tests(sample.columns.get(options.tests_field), options.tests_field)
            program = extract_program(sample.completion_text, options.language)
            if isinstance(tests, str):
                jobs.append(Score.unscorable(tests))
            elif program is None:
                jobs.append(Score.unscorable(f"the completion has no {options.language} program"))
            else:
                cases = tests.cases[: options.max_tests]
                failed = threading.Event()
                futures = [
                    pool.submit(self._case, runner, program, tests.fn_name, case, limits, failed)
                    for case in cases
                ]
                jobs.append((tests, futures))
        try:
            return [job if isinstance(job, Score) else self._score(job[1]) for job in jobs]
        finally:
            runner.forget()

    def _score(self, futures: list[Future[CaseResult]]) -> Score:
        try:
            results = [future.result() for future in futures]
        except SandboxBroken as e:
            for future in futures:
                future.cancel()
            return Score.failed(str(e))
        except Exception as e:  # a bug here fails this sample, not the chunk
            log.exception("reward %s: a case failed unexpectedly", self.name)
            return Score.failed(f"{type(e).__name__}: {e}")
        passed = sum(r.verdict == "passed" for r in results)
        whole = self.options.all_or_nothing
        value = float(passed == len(results)) if whole else passed / len(results)
        return Score.ok(value, raw=summary(results))

    def _case(
        self,
        runner: Runner,
        program: str,
        fn_name: str | None,
        case: TestCase,
        limits: Limits,
        failed: threading.Event,
    ) -> CaseResult:
        if self.options.fail_fast and failed.is_set():
            return CaseResult("skipped")
        python = self.options.language == "python"
        if fn_name is None:
            source = stdin_script(program, self.options.prelude) if python else program
            result = stdin_verdict(runner.run(source, case.input, limits), case.expected)
        else:
            source = call_script(program, fn_name, case.input, self.options.prelude)
            result = call_verdict(runner.run(source, "", limits), case.expected)
        if result.verdict != "passed":
            failed.set()
        return result

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()


def limit_verdict(outcome: Outcome) -> CaseResult | None:
    """The verdict of a run that did not exit cleanly, or None when it exited with code 0."""
    if outcome.verdict in ("time_limit", "memory_limit", "output_limit"):
        return CaseResult(outcome.verdict)
    if outcome.verdict == "killed":
        return CaseResult("runtime_error", "killed by a signal")
    if outcome.stderr.startswith(COMPILE_FAILED):
        errors = [line for line in outcome.stderr.decode("utf-8", "replace").splitlines() if "error" in line]
        return CaseResult("compile_error", (errors or [""])[0][:DETAIL_LIMIT])
    if outcome.exit_code != 0:
        return CaseResult("runtime_error", f"exit code {outcome.exit_code}: {last_line(outcome.stderr)}")
    return None


def stdin_verdict(outcome: Outcome, expected: str) -> CaseResult:
    failure = limit_verdict(outcome)
    if failure is not None:
        return failure
    output = outcome.stdout.decode("utf-8", "replace")
    if stdout_matches(output, expected):
        return CaseResult("passed")
    return CaseResult("wrong_answer", f"expected {expected[:SHOWN]!r}, got {output[:SHOWN]!r}")


def call_verdict(outcome: Outcome, expected: object) -> CaseResult:
    failure = limit_verdict(outcome)
    if failure is not None:
        return failure
    kind, text = read_call(outcome.stdout.decode("utf-8", "replace"))
    if kind == "error":
        return CaseResult("runtime_error", text[:DETAIL_LIMIT])
    if value_matches(text, expected):
        return CaseResult("passed")
    return CaseResult("wrong_answer", f"expected {str(expected)[:SHOWN]!r}, got {text[:SHOWN]!r}")


def last_line(stderr: bytes) -> str:
    """The last non-empty line of a program's standard error (a Python traceback's exception), bounded."""
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip()[:DETAIL_LIMIT] if lines else ""


def summary(results: Sequence[CaseResult]) -> str:
    """The audit's per-case detail: passed, of, the first ``CASES_KEPT`` verdicts, the first failure's why."""
    data: dict[str, object] = {
        "passed": sum(r.verdict == "passed" for r in results),
        "of": len(results),
        "cases": [r.verdict for r in results[:CASES_KEPT]],
    }
    first = next(((i, r) for i, r in enumerate(results) if r.verdict not in ("passed", "skipped")), None)
    if first is not None:
        data["first_failure"] = {"case": first[0], "verdict": first[1].verdict, "detail": first[1].detail}
    return orjson.dumps(data).decode()
