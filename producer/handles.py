"""Handles on submitted batches: wait, poll, read partially, re-open by batch id, honour a deadline.

A :class:`ScoreHandle` is what ``RewardClient.submit`` returns. Its description (size, weights, each
chunk's task id, the deadline and its policy) is also stored in the result backend under the batch id,
with the results' expiry, so that another process can re-open it with ``RewardClient.handle(batch_id)``.

Deadline policies, applied when a wait ends (the batch's deadline or ``get``'s ``timeout``) with scores
still missing:

- ``partial`` (default): return what is ready; the missing scores get status ``timeout`` (value None).
- ``fail``: raise :class:`~rewardq.wire.errors.DeadlineExceeded`; the batch stays in the backend, so a later
  ``get`` can still collect it.
- ``wait``: the deadline is only reported (a warning); ``get`` keeps waiting until every score is back
  or its own ``timeout`` passes, and then behaves as ``partial``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from celery import Celery, states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, ResultSet
from pydantic import ValidationError

from rewardq.broker import GATHER_POLL_S, results_on_broker
from rewardq.connection import publish_failed
from rewardq.resend import Resender, Sendable
from rewardq.results import ScoreResult
from rewardq.stored_samples import SampleStore
from rewardq.wire.errors import DeadlineExceeded, InvalidInputError, Problem, UnknownBatchError
from rewardq.wire.keys import samples_key
from rewardq.wire.schema import ChunkResult, Status

log = logging.getLogger(__name__)

DeadlinePolicy = Literal["partial", "fail", "wait"]
DEADLINE_POLICIES: tuple[str, ...] = get_args(DeadlinePolicy)
_META_PREFIX = "rewardq-batch-"
_MIN_WAIT_S = 0.001


@dataclass(frozen=True)
class Chunk:
    """One task of a batch: a reward over ``size`` samples from ``offset``; ``sendable`` (what sending
    it again needs) only on the handle that submitted it."""

    reward: str
    offset: int
    size: int
    result: AsyncResult
    sendable: Sendable | None = None


def check_deadline(deadline: float | None, policy: str) -> None:
    """Raise InvalidInputError unless ``deadline`` (seconds from now) and ``policy`` are valid."""
    problems = []
    if deadline is not None and (isinstance(deadline, bool) or not deadline > 0):
        problems.append(Problem("deadline", f"must be a positive number of seconds, got {deadline!r}"))
    if policy not in DEADLINE_POLICIES:
        known = ", ".join(DEADLINE_POLICIES)
        problems.append(Problem("on_deadline", f"must be one of {known}, got {policy!r}"))
    if problems:
        raise InvalidInputError(problems)


class ScoreHandle:
    """A submitted batch. ``get`` waits for its scores; ``ready`` and ``partial`` never block.

    ``deadline_at`` is a wall-clock time (``time.time()``) by which the batch should be scored, or None;
    ``on_deadline`` says what a wait that ends with scores missing does (see the module docstring).
    ``resend_after``: seconds a chunk may be overdue before it is looked for in the broker (0: never).
    """

    def __init__(
        self,
        batch_id: str,
        size: int,
        weights: dict[str, float],
        chunks: list[Chunk],
        *,
        deadline_at: float | None = None,
        on_deadline: DeadlinePolicy = "partial",
        resend_after: float = 0.0,
        store: SampleStore | None = None,
    ) -> None:
        self.batch_id = batch_id
        self.size = size
        self.weights = weights
        self.chunks = chunks
        self.deadline_at = deadline_at
        self.on_deadline = on_deadline
        sendables = {c.result.id: c.sendable for c in chunks if c.sendable is not None}
        self._store = store
        self._resender = (
            Resender(self._app, resend_after, sendables, store) if resend_after and sendables else None
        )

    @property
    def task_ids(self) -> list[str]:
        return [c.result.id for c in self.chunks]

    @property
    def _app(self) -> Celery:
        return self.chunks[0].result.app

    def ready(self) -> bool:
        """True when every task of the batch has a result (success or failure)."""
        return all(meta["status"] in states.READY_STATES for meta in self._peek())

    def _peek(self) -> list[dict[str, Any]]:
        """Each chunk's stored state, read without touching its AsyncResult: Celery's gathering skips
        results whose AsyncResult already cached a state, so a peek through them would break ``get``."""
        backend = self._app.backend
        return [backend.get_task_meta(c.result.id, cache=False) for c in self.chunks]

    def partial(self) -> ScoreResult:
        """The scores that are back now, without waiting and without consuming the batch.

        Samples whose task has no result yet have status ``timeout`` and the error "not ready yet";
        ``get`` can still collect the whole batch afterwards.
        """
        collected = _Collector(self.size, self.weights)
        for chunk, meta in zip(self.chunks, self._peek(), strict=True):
            if meta["status"] in states.READY_STATES:
                collected.fill(chunk, meta)
            else:
                collected.missing(chunk, f"not ready yet (task {chunk.result.id})")
        return collected.result(self.batch_id)

    def get(self, timeout: float | None = None, progress: Callable[[int], None] | None = None) -> ScoreResult:
        """Wait for the batch until ``timeout`` seconds pass or, unless the policy is ``wait``, its deadline.

        Scores still missing then are handled by the batch's deadline policy (``timeout`` status, an
        exception, or more waiting). ``progress(n)`` is called with the number of (sample, reward)
        scores of each chunk as it lands. A batch that ``get`` returned is dropped from the backend.
        """
        started = time.monotonic()
        collected = _Collector(self.size, self.weights)
        pending = {c.result.id: c for c in self.chunks}
        self._gather(collected, pending, _earliest(timeout, self._until_deadline()), progress)
        if pending and self.on_deadline == "wait" and self._until_deadline() == 0.0:
            log.warning("batch %s: past its deadline, %d tasks out; waiting on", self.batch_id, len(pending))
            self._gather(collected, pending, _remaining(timeout, started), progress)
        if pending and self.on_deadline == "fail":
            raise DeadlineExceeded(self.batch_id, len(pending), len(self.chunks))
        if pending:
            log.warning(
                "batch %s: %d of %d tasks not back in time", self.batch_id, len(pending), len(self.chunks)
            )
        _forget(self._app.backend, self.batch_id, self.chunks, pending, self._answered_samples(pending))
        why = "by the batch's deadline" if self._until_deadline() == 0.0 else f"within {timeout}s"
        for chunk in pending.values():
            collected.missing(chunk, f"no result {why} (task {chunk.result.id})")
        return collected.result(self.batch_id)

    def _answered_samples(self, pending: Mapping[str, Chunk]) -> list[str]:
        """The keys of the stored samples of chunks every reward has answered, to delete with the
        results when they live in the same Redis (one round trip); deleted here otherwise."""
        if self._store is None:
            return []
        stored = {c.offset for c in self.chunks if c.sendable is not None and c.sendable.stored is not None}
        keys = [
            samples_key(self.batch_id, offset)
            for offset in sorted(stored - {c.offset for c in pending.values()})
        ]
        if results_on_broker(self._app):
            return keys
        try:
            self._store.drop(keys)
        except Exception as e:  # they expire with the results
            log.warning("batch %s: could not delete its stored samples: %s", self.batch_id, e)
        return []

    def _until_deadline(self) -> float | None:
        """Seconds left before the deadline (0.0 once past), or None without one."""
        return None if self.deadline_at is None else max(0.0, self.deadline_at - time.time())

    def _gather(
        self,
        collected: _Collector,
        pending: dict[str, Chunk],
        limit: float | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Fill ``collected`` with the chunks landing within ``limit`` seconds; pop them from ``pending``.

        With a resender, the wait is cut into slices that end when a chunk is overdue; overdue chunks
        are then looked for in the broker and the lost ones sent again.
        """
        ends = None if limit is None else time.monotonic() + limit
        while pending:
            left = None if ends is None else max(0.0, ends - time.monotonic())
            due = None if self._resender is None else self._resender.due_in(pending)
            if due is None or (left is not None and left <= due):
                self._wait(collected, pending, left, progress)
                return
            self._wait(collected, pending, due, progress)
            if pending and self._resender is not None:
                self._resender.check(pending)

    def _wait(
        self,
        collected: _Collector,
        pending: dict[str, Chunk],
        limit: float | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        """One wait of at most ``limit`` seconds for pending chunks."""
        if not pending:
            return
        # Fresh result objects for each wait: Celery's gathering does not see results land on objects
        # that an earlier, timed-out wait (or a peek) has already handled.
        app = self._app
        waiting = {task_id: AsyncResult(task_id, app=app) for task_id in pending}
        results = ResultSet(list(waiting.values()), app=app)
        # Celery reads a timeout of 0 as "no timeout": a wait that is already over still looks once.
        limit = None if limit is None else max(limit, _MIN_WAIT_S)
        try:
            for task_id, meta in results.iter_native(timeout=limit, interval=GATHER_POLL_S):
                chunk = pending.pop(task_id, None)
                if chunk is None:
                    continue
                collected.fill(chunk, meta)
                if progress is not None:
                    progress(chunk.size)
                if not pending:
                    # Stop here: the set's own readiness barrier can miss results that landed while
                    # another batch was being gathered, and iter_native would then wait out the timeout.
                    break
        except (CeleryTimeoutError, TimeoutError):
            pass
        except RuntimeError as e:  # Celery's "result store … must be restarted": Redis stayed away
            if (lost := publish_failed(app, e)) is None:
                raise
            raise lost from e
        finally:
            _unsubscribe(app.backend, [waiting[task_id] for task_id in pending])
            _detach(list(waiting.values()))

    def resend_lost(self) -> list[str]:
        """What ``get`` does between its waits, for a caller that waits by polling :meth:`ready`: send
        again the overdue chunks nothing holds (lost in a broker restart); their task ids. Only the
        handle that submitted the batch can (see :mod:`rewardq.resend`)."""
        if self._resender is None:
            return []
        pending = {
            c.result.id: c
            for c, meta in zip(self.chunks, self._peek(), strict=True)
            if meta["status"] not in states.READY_STATES
        }
        if not pending or self._resender.due_in(pending) != 0.0:
            return []
        return self._resender.check(pending)

    def detach(self) -> None:
        """Stop listening for the batch's results in this process and leave them in the backend, for
        whoever collects the batch by its id (a server that submits and peeks for its callers)."""
        results = [c.result for c in self.chunks]
        _unsubscribe(self._app.backend, results)
        _detach(results)

    def describe(self) -> dict[str, Any]:
        """What re-opening the handle elsewhere needs, as JSON-ready values."""
        return {
            "size": self.size,
            "weights": self.weights,
            "chunks": [[c.reward, c.offset, c.size, c.result.id] for c in self.chunks],
            "deadline_at": self.deadline_at,
            "on_deadline": self.on_deadline,
        }

    def remember(self) -> None:
        """Store the description in the result backend under the batch id, with the results' expiry."""
        self._app.backend.set(_meta_key(self.batch_id), json.dumps(self.describe()))

    @classmethod
    def reopen(cls, app: Celery, batch_id: str) -> ScoreHandle:
        """The handle of a batch submitted elsewhere; UnknownBatchError when the backend has no record."""
        raw = app.backend.get(_meta_key(batch_id))
        if raw is None:
            raise UnknownBatchError(batch_id)
        meta = json.loads(raw)
        chunks = [
            Chunk(reward, offset, size, AsyncResult(task_id, app=app))
            for reward, offset, size, task_id in meta["chunks"]
        ]
        return cls(
            batch_id,
            meta["size"],
            meta["weights"],
            chunks,
            deadline_at=meta["deadline_at"],
            on_deadline=meta["on_deadline"],
        )


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _remaining(timeout: float | None, started: float) -> float | None:
    return None if timeout is None else max(0.0, timeout - (time.monotonic() - started))


def _meta_key(batch_id: str) -> str:
    return f"{_META_PREFIX}{batch_id}"


class _Collector:
    """Per-reward values, statuses and errors of a batch as its chunks land."""

    def __init__(self, size: int, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)
        self.values: dict[str, list[float | None]] = {r: [None] * size for r in weights}
        self.statuses: dict[str, list[Status]] = {r: ["timeout"] * size for r in weights}
        self.errors: dict[str, dict[int, str]] = {r: {} for r in weights}

    def result(self, batch_id: str) -> ScoreResult:
        return ScoreResult(batch_id, self.weights, self.values, self.statuses, self.errors)

    def missing(self, chunk: Chunk, text: str) -> None:
        for i in range(chunk.offset, chunk.offset + chunk.size):
            self.errors[chunk.reward][i] = text

    def fill(self, chunk: Chunk, meta: Mapping[str, Any]) -> None:
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
                    self.values[chunk.reward][span.start : span.stop] = answer.values
                    self.statuses[chunk.reward][span.start : span.stop] = answer.statuses
                    for i, text in answer.errors.items():
                        self.errors[chunk.reward][chunk.offset + i] = text
                    return
        else:
            exc = meta.get("result")
            problem = f"task {meta.get('status', 'failed').lower()}: {type(exc).__name__}: {exc}"
        for i in span:
            self.statuses[chunk.reward][i] = "error"
            self.values[chunk.reward][i] = None
            self.errors[chunk.reward][i] = problem


def _unsubscribe(backend: Any, results: list[AsyncResult]) -> None:
    """Stop listening for results that did not land (the Redis backend's pub/sub subscriptions)."""
    if hasattr(backend, "remove_pending_result"):
        for result in results:
            backend.remove_pending_result(result)


def _detach(results: list[AsyncResult]) -> None:
    """Unhook handled results from their backend. Celery's ``AsyncResult.__del__`` unsubscribes through
    the backend even for a result that is no longer subscribed; one collected later, after Redis went
    away (a trainer's batch object kept in a cycle), would stall that thread ~20 s retrying to connect."""
    for result in results:
        result.backend = None


def _forget(
    backend: Any, batch_id: str, chunks: list[Chunk], pending: Mapping[str, Chunk], also: list[str]
) -> None:
    """Drop a finished batch's results and description from the backend now rather than at expiry, and
    stop listening for those that timed out: a trainer scores for days, and a Redis that keeps every
    result until it expires fills up (with noeviction it then refuses writes), as would a client's
    subscriptions."""
    _unsubscribe(backend, [chunk.result for chunk in pending.values()])
    _detach([chunk.result for chunk in chunks])
    keys = [backend.get_key_for_task(c.result.id) for c in chunks]
    keys.append(_meta_key(batch_id))
    keys.extend(also)
    client = getattr(backend, "client", None)
    if client is not None and hasattr(client, "unlink"):  # Redis: one round trip for the batch
        client.unlink(*keys)
        return
    for key in keys:
        backend.delete(key)
