"""RewardClient: what a trainer calls to score completions through rewardq.

``submit`` validates everything before anything is enqueued, splits the batch into chunks (whole groups
for a group-level reward: :mod:`rewardq.chunking`), stores each
chunk's samples once in the broker's Redis (:mod:`rewardq.stored_samples`) and sends one task per
(chunk, reward) by name to the reward's queue; the :class:`~rewardq.handles.ScoreHandle`
it returns gathers the chunks (no chords) into a :class:`ScoreResult` in input order, and ``handle``
re-opens one by batch id.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

from celery import Celery
from kombu.exceptions import OperationalError

from rewardq.broker import make_app
from rewardq.catalog import check_weights, group_rewards, known_rewards
from rewardq.chunking import chunk_spans, group_spans, sample_group_keys
from rewardq.connection import check_connection, publish_failed
from rewardq.handles import Chunk, DeadlinePolicy, ScoreHandle, check_deadline
from rewardq.local_worker import LocalWorker, start_local_worker
from rewardq.resend import Sendable, summary
from rewardq.results import ScoreResult
from rewardq.samples import to_samples
from rewardq.serving import REDIS_SCHEMES, ServingCheck, checks_serving
from rewardq.stored_samples import SampleStore, encode, stores_samples, worth_storing
from rewardq.wire.errors import InvalidInputError, Problem
from rewardq.wire.schema import (
    MAX_BATCH_ID,
    MAX_RUN_ID,
    SENT_AT_HEADER,
    TASK_NAME,
    Sample,
    ScoreTask,
    id_problem,
    queue_for,
    step_problem,
)
from rewardq.wire.settings import Settings

if TYPE_CHECKING:  # rewardq.integrations.trl imports this module
    from rewardq.integrations.trl import TrlOptions

log = logging.getLogger(__name__)


class RewardClient:
    """Submit completion batches for scoring. ``RewardClient()`` reads the REWARDQ_* settings.

    With no broker configured it starts an embedded in-process worker on first use (needs
    ``rewardq[worker]``); close the client (or use it as a context manager) to stop it.
    """

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self._app = app
        self._embedded: LocalWorker | None = None
        self._known: set[str] | None = None
        self._grouped: frozenset[str] | None = None
        self._serving: ServingCheck | None = None
        self._store: SampleStore | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            if self.settings.embedded:
                self._embedded = start_local_worker(self.settings)
                self._app = self._embedded.app
            else:
                app = make_app(self.settings, name="rewardq.producer")
                check_connection(app)  # an unreachable Redis or a wrong password: one clear error now
                self._app = app
        return self._app

    @property
    def known_rewards(self) -> set[str]:
        if self._known is None:
            self._known = known_rewards(self.settings.rewards)
        return self._known

    @property
    def group_rewards(self) -> frozenset[str]:
        """The configured rewards that score whole groups (their tasks hold whole groups)."""
        if self._grouped is None:
            self._grouped = group_rewards(self.settings.rewards)
        return self._grouped

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
        deadline: float | None = None,
        on_deadline: DeadlinePolicy = "partial",
        priority: int | None = None,
        allow_scorer_change: bool = False,
    ) -> ScoreHandle:
        """Validate and enqueue; returns at once. Raises InvalidInputError / UnknownRewardError first.

        ``lines`` and ``sizes`` come from a file reader: each row's line number (for problems) and its
        size as JSON, which is then not measured again. ``deadline``: seconds from now by which the
        batch should be scored; ``on_deadline`` says what ``get`` does with scores still missing then
        (see :mod:`rewardq.handles`).

        ``priority``: None (training traffic) or :data:`rewardq.wire.keys.RESCORE_PRIORITY`, which workers
        take only when no training task waits (Redis broker; the embedded one ignores it).

        A run keeps, per reward, the scorer fingerprint its first batch was served with (see
        :mod:`rewardq.scorers`): a batch whose reward live workers now serve with another one raises
        ScorerChangedError, or re-pins the run with ``allow_scorer_change=True``.
        """
        weights = check_weights(rewards, self.known_rewards)
        _check_request(run_id, step, len(samples), batch_id)
        check_deadline(deadline, on_deadline)
        wire = self._normalize(samples, lines, sizes, source)
        size = self.settings.chunk_size
        if self.group_rewards.isdisjoint(weights):
            spans = chunk_spans(len(wire), size)
        else:  # a group-level reward: no chunk splits a group
            spans = group_spans(sample_group_keys(wire), size, lines=lines)
        app = self.app  # connects first: an unreachable broker fails with its own clear error
        self.require_serving(weights)  # a reward no live worker serves: refused before enqueueing
        if self._serving is not None and checks_serving(self.settings):  # the run keeps its scorers
            self._serving.pin(run_id, weights, allow_change=allow_scorer_change)
        batch_id = batch_id or uuid.uuid4().hex
        parts = {start: wire[start:end] for start, end in spans}
        store = self._sample_store()
        blobs: dict[int, bytes] = {}
        if store is not None:
            encoded = {offset: encode(part) for offset, part in parts.items()}
            blobs = {o: blob for o, blob in encoded.items() if worth_storing(len(blob), len(weights))}
        if store is not None and blobs:
            store.put(batch_id, blobs)
        chunks: list[Chunk] = []
        for offset, part in parts.items():
            for reward in weights:
                payload = ScoreTask.payload(
                    part,
                    batch_id=batch_id,
                    run_id=run_id,
                    step=step,
                    reward=reward,
                    offset=offset,
                    stored=offset in blobs,
                )
                sendable = Sendable(payload, queue_for(reward), priority, blobs.get(offset))
                try:
                    result = app.send_task(
                        TASK_NAME,
                        args=[payload],
                        queue=sendable.queue,
                        argsrepr=summary(payload),
                        kwargsrepr="{}",
                        priority=priority,
                        headers={SENT_AT_HEADER: time.time()},
                    )
                except (OperationalError, RuntimeError) as e:  # Redis outlasted Celery's retries
                    if (unavailable := publish_failed(app, e)) is None:
                        raise
                    raise unavailable from e
                chunks.append(Chunk(reward, offset, len(part), result, sendable))
        log.debug("batch %s: %d samples, %d tasks", batch_id, len(wire), len(chunks))
        deadline_at = None if deadline is None else time.time() + deadline
        handle = ScoreHandle(
            batch_id,
            len(wire),
            weights,
            chunks,
            deadline_at=deadline_at,
            on_deadline=on_deadline,
            resend_after=0.0 if self.settings.embedded else self.settings.resend_after,
            store=store,
        )
        handle.remember()
        return handle

    def _sample_store(self) -> SampleStore | None:
        """Where chunks' samples are stored for their tasks; None when tasks carry them inline."""
        if self._store is None and stores_samples(self.settings):
            self._store = SampleStore(self.settings)
        return self._store

    def scorers(self, rewards: Sequence[str], *, since: float | None = None) -> dict[str, str | None]:
        """The scorer fingerprint each reward is served with: the embedded worker's own, or what the
        live workers announce (waiting for them as ``submit`` does; None where none announces one).
        Raises UnknownRewardError first, ScorerMismatchError for a reward live workers serve with several.
        ``since``: as for :meth:`require_serving`."""
        rewards = list(check_weights(rewards, self.known_rewards))
        if self.settings.embedded:
            _ = self.app  # starts the embedded worker, which serves every reward of this client's config
            assert self._embedded is not None
            return {reward: self._embedded.fingerprint(reward) for reward in rewards}
        if not str(self.settings.broker_url).startswith(REDIS_SCHEMES):
            return dict.fromkeys(rewards)  # only a Redis broker holds announcements
        self.require_serving(rewards, since=since)
        self._serving = self._serving or ServingCheck(self.settings)
        if not checks_serving(self.settings):
            self._serving.read()
        return self._serving.fingerprints(rewards)

    def require_serving(self, rewards: Iterable[str], *, since: float | None = None) -> None:
        """Wait until a live worker serves each reward, up to REWARDQ_SERVE_WAIT seconds counted from
        ``since`` (a ``time.monotonic()`` reading; default now), else raise UnservedRewardError. Does
        nothing on the embedded worker, a broker other than Redis, or with a wait of 0."""
        if not checks_serving(self.settings):
            return
        self.app  # noqa: B018 - connects first: an unreachable broker fails with its own clear error
        self._serving = self._serving or ServingCheck(self.settings)
        self._serving.require(rewards, since=since)

    def handle(self, batch_id: str) -> ScoreHandle:
        """Re-open a batch submitted by this or another process (same result backend) by its id.

        Raises UnknownBatchError when the backend has no record of it: never submitted there, already
        collected by ``get``, or expired (REWARDQ_RESULT_EXPIRES).
        """
        return ScoreHandle.reopen(self.app, batch_id)

    def reward_func(
        self, rewards: Mapping[str, float] | Sequence[str] | str, **options: Unpack[TrlOptions]
    ) -> Callable[..., Any]:
        """A TRL reward function: each sample's weighted total of ``rewards`` (see rewardq.integrations.trl).

        ``options``: ``run_id`` (default REWARDQ_RUN_ID), ``asynchronous``, ``timeout``, ``deadline``,
        ``on_deadline`` (:class:`~rewardq.integrations.trl.TrlOptions`); the step is TRL's
        ``trainer_state.global_step``.
        """
        from rewardq.integrations.trl import total_reward

        return total_reward(self, rewards, **options)

    def reward_funcs(
        self, rewards: Mapping[str, float] | Sequence[str] | str, **options: Unpack[TrlOptions]
    ) -> list[Callable[..., Any]]:
        """TRL reward functions, one per reward and named after it, sharing one submission per batch.

        Give the weights to TRL (``GRPOConfig(reward_weights=...)``); see rewardq.integrations.trl.
        ``options``: as for :meth:`reward_func`.
        """
        from rewardq.integrations.trl import per_reward

        return per_reward(self, rewards, **options)

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
        objects = [s for s in samples if isinstance(s, Sample)]
        if objects:
            if len(objects) != len(samples):
                raise InvalidInputError([Problem("samples", "pass either rows or Sample objects, not a mix")])
            return [s.model_dump(mode="json") for s in objects]
        rows = [s for s in samples if not isinstance(s, Sample)]
        return to_samples(
            rows, max_record_bytes=self.settings.max_record_bytes, lines=lines, sizes=sizes, source=source
        )

    def close(self) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None
        if self._store is not None:
            self._store.close()
            self._store = None
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


def _check_request(run_id: str, step: int | None, count: int, batch_id: str | None = None) -> None:
    problems = []
    if batch_id is not None and (problem := id_problem(batch_id, MAX_BATCH_ID)) is not None:
        problems.append(Problem("batch_id", problem))
    if (problem := id_problem(run_id, MAX_RUN_ID)) is not None:
        problems.append(Problem("run_id", problem))
    if (problem := step_problem(step)) is not None:
        problems.append(Problem("step", problem))
    if count == 0:
        problems.append(Problem("samples", "the batch is empty"))
    if problems:
        raise InvalidInputError(problems)
