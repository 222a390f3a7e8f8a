"""RewardClient: what a trainer calls to score completions through rewardq.

``submit`` validates everything before anything is enqueued, splits the batch into chunks and sends
one task per (chunk, reward) by name to the reward's queue; ``ScoreHandle.get`` gathers the chunks
(no chords) into a :class:`ScoreResult` in input order.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from celery import Celery, states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, ResultSet
from pydantic import TypeAdapter, ValidationError

from rewardq.broker import GATHER_POLL_S, make_app
from rewardq.catalog import check_weights, known_rewards
from rewardq.errors import EmbeddedUnavailable, InvalidInputError, Problem
from rewardq.results import ScoreResult
from rewardq.samples import to_samples
from rewardq.schema import SCHEMA_VERSION, TASK_NAME, ChunkResult, RunId, Sample, Status, queue_for
from rewardq.settings import Settings

log = logging.getLogger(__name__)

_RUN_ID = TypeAdapter(RunId)


@dataclass(frozen=True)
class _Chunk:
    reward: str
    offset: int
    size: int
    result: AsyncResult


class ScoreHandle:
    """A submitted batch; ``get`` waits for its scores."""

    def __init__(self, batch_id: str, size: int, weights: dict[str, float], chunks: list[_Chunk]) -> None:
        self.batch_id = batch_id
        self.size = size
        self.weights = weights
        self.chunks = chunks

    @property
    def task_ids(self) -> list[str]:
        return [c.result.id for c in self.chunks]

    def get(self, timeout: float | None = None, progress: Callable[[int], None] | None = None) -> ScoreResult:
        """Wait up to ``timeout`` seconds; chunks not back by then get status ``timeout`` (value None).

        ``progress(n)`` is called with the number of (sample, reward) scores of each chunk as it lands.
        """
        values: dict[str, list[float | None]] = {r: [None] * self.size for r in self.weights}
        statuses: dict[str, list[Status]] = {r: ["timeout"] * self.size for r in self.weights}
        errors: dict[str, dict[int, str]] = {r: {} for r in self.weights}
        pending = {c.result.id: c for c in self.chunks}
        app = self.chunks[0].result.app
        results = ResultSet([c.result for c in self.chunks], app=app)
        try:
            for task_id, meta in results.iter_native(timeout=timeout, interval=GATHER_POLL_S):
                chunk = pending.pop(task_id, None)
                if chunk is None:
                    continue
                _fill(chunk, meta, values, statuses, errors)
                if progress is not None:
                    progress(chunk.size)
        except (CeleryTimeoutError, TimeoutError):
            log.warning(
                "batch %s: %d of %d tasks not back within %ss",
                self.batch_id,
                len(pending),
                len(self.chunks),
                timeout,
            )
        _forget(app.backend, self.chunks, pending)
        for chunk in pending.values():
            for i in range(chunk.offset, chunk.offset + chunk.size):
                errors[chunk.reward][i] = f"no result within {timeout}s (task {chunk.result.id})"
        return ScoreResult(self.batch_id, self.weights, values, statuses, errors)


def _forget(backend: Any, chunks: list[_Chunk], pending: Mapping[str, _Chunk]) -> None:
    """Drop a finished batch's results from the backend now rather than at expiry, and stop listening
    for those that timed out: a trainer scores for days, and a Redis that keeps every result until it
    expires fills up (with noeviction it then refuses writes), as would a client's subscriptions."""
    for chunk in pending.values():
        if hasattr(backend, "remove_pending_result"):  # the Redis backend's pub/sub subscription
            backend.remove_pending_result(chunk.result)
    keys = [backend.get_key_for_task(c.result.id) for c in chunks]
    client = getattr(backend, "client", None)
    if client is not None and hasattr(client, "unlink"):  # Redis: one round trip for the batch
        client.unlink(*keys)
        return
    for key in keys:
        backend.delete(key)


def _fill(
    chunk: _Chunk,
    meta: Mapping[str, Any],
    values: dict[str, list[float | None]],
    statuses: dict[str, list[Status]],
    errors: dict[str, dict[int, str]],
) -> None:
    span = range(chunk.offset, chunk.offset + chunk.size)
    problem: str | None = None
    if meta.get("status") == states.SUCCESS:
        try:
            answer = ChunkResult.model_validate(meta.get("result"))
        except ValidationError as e:
            problem = f"malformed worker result: {e}"
        else:
            if answer.offset != chunk.offset or len(answer.values) != chunk.size:
                problem = f"worker answered for {len(answer.values)} samples at {answer.offset}"
            else:
                values[chunk.reward][span.start : span.stop] = answer.values
                statuses[chunk.reward][span.start : span.stop] = answer.statuses
                for i, text in answer.errors.items():
                    errors[chunk.reward][chunk.offset + i] = text
                return
    else:
        exc = meta.get("result")
        problem = f"task {meta.get('status', 'failed').lower()}: {type(exc).__name__}: {exc}"
    for i in span:
        statuses[chunk.reward][i] = "error"
        values[chunk.reward][i] = None
        errors[chunk.reward][i] = problem


class RewardClient:
    """Submit completion batches for scoring. ``RewardClient()`` reads the REWARDQ_* settings.

    With no broker configured it starts an embedded in-process worker on first use (needs
    ``rewardq[worker]``); close the client (or use it as a context manager) to stop it.
    """

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self._app = app
        self._embedded: Any = None
        self._known: set[str] | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            if self.settings.embedded:
                self._embedded = _start_embedded(self.settings)
                self._app = self._embedded.app
            else:
                self._app = make_app(self.settings, name="rewardq.producer")
        return self._app

    @property
    def known_rewards(self) -> set[str]:
        if self._known is None:
            self._known = known_rewards(self.settings.rewards)
        return self._known

    def submit(
        self,
        samples: Sequence[Mapping[str, Any] | Sample],
        rewards: Mapping[str, float] | Sequence[str] | str,
        *,
        run_id: str,
        step: int | None = None,
        batch_id: str | None = None,
        lines: Sequence[int] | None = None,
        sizes: Sequence[int] | None = None,
        source: str | None = None,
    ) -> ScoreHandle:
        """Validate and enqueue; returns at once. Raises InvalidInputError / UnknownRewardError first.

        ``lines`` and ``sizes`` come from a file reader: each row's line number (for problems) and its
        size as JSON, which is then not measured again.
        """
        weights = check_weights(rewards, self.known_rewards)
        _check_request(run_id, step, len(samples))
        wire = self._normalize(samples, lines, sizes, source)
        batch_id = batch_id or uuid.uuid4().hex
        size = self.settings.chunk_size
        chunks: list[_Chunk] = []
        for offset in range(0, len(wire), size):
            part = wire[offset : offset + size]
            for reward in weights:
                payload = {  # a ScoreTask: tests/producer/test_payload.py
                    "v": SCHEMA_VERSION,
                    "batch_id": batch_id,
                    "run_id": run_id,
                    "step": step,
                    "reward": reward,
                    "offset": offset,
                    "samples": part,
                }
                # A short argsrepr: Celery would otherwise build a truncated repr of the whole chunk
                # (about 0.4 ms per 64 samples) for logs and monitors.
                summary = f"batch={batch_id} reward={reward} samples={offset}..{offset + len(part) - 1}"
                result = self.app.send_task(
                    TASK_NAME, args=[payload], queue=queue_for(reward), argsrepr=summary, kwargsrepr="{}"
                )
                chunks.append(_Chunk(reward, offset, len(part), result))
        log.debug("batch %s: %d samples, %d tasks", batch_id, len(wire), len(chunks))
        return ScoreHandle(batch_id, len(wire), weights, chunks)

    def score(
        self,
        samples: Sequence[Mapping[str, Any] | Sample],
        rewards: Mapping[str, float] | Sequence[str] | str,
        *,
        run_id: str,
        step: int | None = None,
        timeout: float | None = None,
    ) -> ScoreResult:
        """``submit`` and wait (up to ``timeout``, default the REWARDQ_TIMEOUT setting)."""
        handle = self.submit(samples, rewards, run_id=run_id, step=step)
        return handle.get(timeout=self.settings.timeout if timeout is None else timeout)

    def _normalize(
        self,
        samples: Sequence[Mapping[str, Any] | Sample],
        lines: Sequence[int] | None,
        sizes: Sequence[int] | None,
        source: str | None,
    ) -> list[dict[str, Any]]:
        """Rows (TRL or ms-swift shapes) or Sample objects, in their wire form."""
        if any(isinstance(s, Sample) for s in samples):
            if not all(isinstance(s, Sample) for s in samples):
                raise InvalidInputError([Problem("samples", "pass either rows or Sample objects, not a mix")])
            return [s.model_dump(mode="json") for s in samples]  # type: ignore[union-attr]
        return to_samples(
            samples, max_record_bytes=self.settings.max_record_bytes, lines=lines, sizes=sizes, source=source
        )

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
            self._app = None
        elif self._app is not None:
            self._app.close()
            self._app = None

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _check_request(run_id: str, step: int | None, count: int) -> None:
    problems = []
    try:
        _RUN_ID.validate_python(run_id)
    except ValidationError:
        problems.append(Problem("run_id", f"must be a string of 1 to 200 characters, got {run_id!r}"))
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        problems.append(Problem("step", f"must be a non-negative integer, got {step!r}"))
    if count == 0:
        problems.append(Problem("samples", "the batch is empty"))
    if problems:
        raise InvalidInputError(problems)


def _start_embedded(settings: Settings) -> Any:
    """The embedded worker lives in rewardq.workers; imported only when no broker is configured."""
    try:
        embedded = importlib.import_module("rewardq.workers.embedded")
    except ImportError as e:
        raise EmbeddedUnavailable(
            "no broker configured (REWARDQ_BROKER_URL) and the embedded worker needs the worker extras: "
            f"pip install 'rewardq[worker]' ({e})"
        ) from e
    return embedded.EmbeddedWorker.start(settings)
