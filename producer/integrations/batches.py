"""One submission per trainer batch, shared by every reward callable built on it.

A trainer calls each reward function with the same batch (TRL and ms-swift call one per reward, in
turn or concurrently when they are async). :class:`SharedBatches` keys a batch on its step and content:
the first call submits all the rewards and waits, the others wait for the same result.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson

from rewardq.client import RewardClient
from rewardq.handles import DeadlinePolicy
from rewardq.results import ScoreResult
from rewardq.wire.errors import InvalidInputError, Problem

log = logging.getLogger(__name__)

RUN_ID_ENV = "REWARDQ_RUN_ID"
Rows = Callable[[], Sequence[Mapping[str, Any]]]
Report = Callable[[ScoreResult], None]
# Batches kept for callables that have not read them yet; more than a trainer has in flight at once.
MAX_SHARED = 16


def resolve_run_id(run_id: str | None) -> str:
    """The run id given, else REWARDQ_RUN_ID; InvalidInputError when neither is set."""
    found = run_id or os.environ.get(RUN_ID_ENV)
    if not found:
        raise InvalidInputError([Problem("run_id", f"missing: pass run_id=... or set {RUN_ID_ENV}")])
    return found


def batch_key(step: int | None, *parts: Any) -> bytes:
    """A digest of a batch's step and content, equal for every call a trainer makes with that batch."""
    return hashlib.blake2b(orjson.dumps([step, parts], default=repr), digest_size=16).digest()


def check_lengths(completions: Sequence[Any], per_sample: Mapping[str, Sequence[Any] | None]) -> None:
    """Refuse a batch whose per-sample fields (``prompts`` …) do not hold one entry per completion:
    pairing them by position would score completions against the wrong prompts, or drop samples."""
    problems = [
        Problem(
            name, f"{len(values)} entries for {len(completions)} completions; one per completion expected"
        )
        for name, values in per_sample.items()
        if values is not None and len(values) != len(completions)
    ]
    if problems:
        raise InvalidInputError(problems)


def json_columns(kwargs: Mapping[str, Any], size: int, skip: Iterable[str]) -> dict[str, list[Any]]:
    """The dataset columns among a trainer's keyword arguments: per-sample lists that are JSON.

    Anything else (trainer state, callables, tensors, a list of another length) is not sent.
    """
    skipped = set(skip)
    columns: dict[str, list[Any]] = {}
    for name, value in kwargs.items():
        if name in skipped or not isinstance(value, list | tuple) or len(value) != size:
            continue
        try:
            orjson.dumps(value)
        except TypeError:
            log.debug("column %r is not JSON; not sent", name)
            continue
        columns[name] = list(value)
    return columns


def step_of(trainer_state: Any) -> int | None:
    """``trainer_state.global_step`` (TRL and ms-swift pass a transformers TrainerState), if any."""
    step = getattr(trainer_state, "global_step", None)
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def metrics(result: ScoreResult) -> dict[str, float]:
    """Per reward: the mean of its ``ok`` values and how many samples got each status."""
    out: dict[str, float] = {}
    for name, values in result.rewards.items():
        ok = [v for v in values if v is not None]
        if ok:
            out[f"rewardq/{name}/mean"] = sum(ok) / len(ok)
        for status, count in result.status_counts()[name].items():
            out[f"rewardq/{name}/{status}"] = float(count)
    return out


@dataclass
class _Shared:
    future: Future[ScoreResult] = field(default_factory=Future)
    reads: int = 0


class SharedBatches:
    """Scores batches for ``readers`` callables with one submission each.

    ``score(key, rows, step)`` returns the batch's :class:`ScoreResult`; the first of the readers to
    ask for a key submits ``rows()`` and waits, the others get the same result. A batch is dropped once
    every reader has read it (or, for readers that never ask, after MAX_SHARED newer batches).
    ``run_id`` is resolved here (:func:`resolve_run_id`).
    """

    def __init__(
        self,
        client: RewardClient,
        weights: Mapping[str, float],
        *,
        readers: int = 1,
        run_id: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        on_deadline: DeadlinePolicy = "partial",
    ) -> None:
        self.client = client
        self.weights = dict(weights)
        self.run_id = resolve_run_id(run_id)
        self.readers = readers
        self.timeout = timeout
        self.deadline = deadline
        self.on_deadline: DeadlinePolicy = on_deadline
        self._shared: OrderedDict[bytes, _Shared] = OrderedDict()
        self._lock = threading.Lock()

    def score(self, key: bytes, rows: Rows, step: int | None, report: Report | None = None) -> ScoreResult:
        """The batch's scores; ``report`` is called with them by the one call that submitted."""
        shared, owner = self._claim(key)
        if owner:
            self._run(shared, rows, step, report)
        return shared.future.result()

    async def ascore(
        self, key: bytes, rows: Rows, step: int | None, report: Report | None = None
    ) -> ScoreResult:
        """``score`` for async callables: the wait runs in a thread, concurrent callers share it."""
        shared, owner = self._claim(key)
        if owner:
            await asyncio.to_thread(self._run, shared, rows, step, report)
        return await asyncio.wrap_future(shared.future)

    def _claim(self, key: bytes) -> tuple[_Shared, bool]:
        with self._lock:
            shared = self._shared.get(key)
            owner = shared is None
            if shared is None:
                shared = self._shared[key] = _Shared()
                while len(self._shared) > MAX_SHARED:
                    self._shared.popitem(last=False)
            shared.reads += 1
            if shared.reads >= self.readers:
                self._shared.pop(key, None)
            return shared, owner

    def _run(self, shared: _Shared, rows: Rows, step: int | None, report: Report | None) -> None:
        try:
            handle = self.client.submit(
                rows(),
                self.weights,
                run_id=self.run_id,
                step=step,
                deadline=self.deadline,
                on_deadline=self.on_deadline,
            )
            timeout = self.client.settings.timeout if self.timeout is None else self.timeout
            result = handle.get(timeout=timeout)
        except BaseException as e:
            shared.future.set_exception(e)
            return
        shared.future.set_result(result)
        if report is not None:
            report(result)
