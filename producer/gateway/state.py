"""The gateway's one :class:`RewardClient` and how requests share it.

Requests run concurrently, and Celery's Redis result consumer (one pub/sub connection per app) is not
thread-safe: every call that touches it (connecting, ``submit``, the final ``get``) takes one lock. A
request waits for its batch without it, reading the chunks' states (``ScoreHandle.ready``, plain reads
through redis-py's thread-safe pool) between pauses, and takes the lock only to collect what is back.

Who submitted a batch is kept in the result backend beside it (same expiry): a batch is visible only
to the key that submitted it; to any other it is as unknown as a batch id never issued.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.concurrency import run_in_threadpool

from rewardq.catalog import check_weights
from rewardq.client import RewardClient
from rewardq.gateway.auth import Caller, Callers
from rewardq.gateway.config import GatewayConfig
from rewardq.handles import DeadlinePolicy, ScoreHandle
from rewardq.results import ScoreResult
from rewardq.serving import REDIS_SCHEMES, checks_serving, read_announcements, redis_client, served_rewards
from rewardq.wire.errors import UnknownBatchError

log = logging.getLogger(__name__)

OWNER_PREFIX = "rewardq-gateway-owner-"
FIRST_PAUSE_S = 0.002  # a wait reads the batch's state after this pause, doubling up to LAST_PAUSE_S
LAST_PAUSE_S = 0.05
RESEND_CHECK_S = 1.0  # how often a wait asks the handle to re-send chunks lost in a broker restart
COLLECT_GRACE_S = 1.0  # the most a collect of a batch found ready may wait for its results to be read


class Gateway:
    """What the routes share (``app.state.gateway``): the config, the keys and the client."""

    def __init__(self, config: GatewayConfig, client: RewardClient) -> None:
        self.config = config
        self.client = client
        self.callers = Callers(config.keys)
        self._celery = threading.Lock()
        self._redis: Any = None

    # -- producing -------------------------------------------------------------------------------------

    async def submit(
        self,
        caller: Caller,
        samples: Sequence[Mapping[str, Any]],
        rewards: Mapping[str, float] | Sequence[str],
        *,
        run_id: str,
        step: int | None = None,
        deadline: float | None = None,
        on_deadline: DeadlinePolicy = "partial",
        by_id: bool = True,
    ) -> ScoreHandle:
        """Authorize, then ``RewardClient.submit``. With ``by_id`` the batch is recorded as ``caller``'s,
        to be peeked at and collected by its id; without, the request waits for it itself (``wait``)."""
        caller.authorize(run_id, rewards)
        owner = caller.name if by_id else None
        return await run_in_threadpool(
            self._submit, owner, samples, rewards, run_id, step, deadline, on_deadline
        )

    def _submit(
        self,
        owner: str | None,
        samples: Sequence[Mapping[str, Any]],
        rewards: Mapping[str, float] | Sequence[str],
        run_id: str,
        step: int | None,
        deadline: float | None,
        on_deadline: DeadlinePolicy,
    ) -> ScoreHandle:
        # Cheap checks and the wait for a live worker happen outside the lock, so one request waiting
        # for a worker (up to REWARDQ_SERVE_WAIT) holds up no other.
        weights = check_weights(rewards, self.client.known_rewards)
        self.connect()
        self.client.require_serving(weights)
        with self._celery:
            handle = self.client.submit(
                samples, weights, run_id=run_id, step=step, deadline=deadline, on_deadline=on_deadline
            )
        if owner is not None:
            self.client.app.backend.set(_owner_key(handle.batch_id), owner)
        return handle

    async def wait(self, handle: ScoreHandle, timeout: float) -> ScoreResult:
        """``handle.get(timeout)``, waiting without the lock (see the module docstring)."""
        limit = timeout
        if handle.deadline_at is not None and handle.on_deadline != "wait":
            limit = min(timeout, max(0.0, handle.deadline_at - time.time()))
        poll = _Poll(limit, LAST_PAUSE_S)
        ready = await run_in_threadpool(handle.ready)
        while not ready and (pause := poll.pause()) is not None:
            await asyncio.sleep(pause)
            if poll.resend_due():
                await run_in_threadpool(self._resend_lost, handle)
            ready = await run_in_threadpool(handle.ready)
        return await run_in_threadpool(self._get, handle, COLLECT_GRACE_S if ready else poll.left(timeout))

    def _resend_lost(self, handle: ScoreHandle) -> None:
        with self._celery:
            handle.resend_lost()

    def produce(
        self,
        samples: Sequence[Mapping[str, Any]],
        rewards: Mapping[str, float] | Sequence[str],
        *,
        run_id: str,
        timeout: float,
        last_pause: float = LAST_PAUSE_S,
    ) -> ScoreResult:
        """``submit`` and ``wait`` for a producer with a thread of its own (the protocols' coalescers, whose
        requests' keys were authorized already): the same steps and lock, blocking that thread rather
        than the event loop; no owner record (the batch is waited for here)."""
        handle = self._submit(None, samples, rewards, run_id, None, None, "partial")
        poll = _Poll(timeout, last_pause)
        ready = handle.ready()
        while not ready and (pause := poll.pause()) is not None:
            time.sleep(pause)
            if poll.resend_due():
                self._resend_lost(handle)
            ready = handle.ready()
        return self._get(handle, COLLECT_GRACE_S if ready else poll.left(timeout))

    def _get(self, handle: ScoreHandle, timeout: float) -> ScoreResult:
        with self._celery:
            return handle.get(timeout=timeout)

    async def score(
        self,
        caller: Caller,
        samples: Sequence[Mapping[str, Any]],
        rewards: Mapping[str, float] | Sequence[str],
        *,
        run_id: str,
        step: int | None = None,
        timeout: float | None = None,
    ) -> ScoreResult:
        """``RewardClient.score`` for a caller: submit, then wait up to ``timeout`` (default the client's
        REWARDQ_TIMEOUT, at most the config's ``max_timeout``)."""
        handle = await self.submit(caller, samples, rewards, run_id=run_id, step=step, by_id=False)
        return await self.wait(handle, self.timeout(timeout))

    def timeout(self, asked: float | None) -> float:
        """The wait a request gets: what it asked, else the client's default; at most ``max_timeout``."""
        return min(self.client.settings.timeout if asked is None else asked, self.config.max_timeout)

    # -- batches by id ---------------------------------------------------------------------------------

    async def reopen(self, caller: Caller, batch_id: str) -> ScoreHandle:
        """The handle of ``caller``'s batch; UnknownBatchError for one it did not submit."""
        return await run_in_threadpool(self._reopen, caller, batch_id)

    def _reopen(self, caller: Caller, batch_id: str) -> ScoreHandle:
        self.connect()
        owner = self.client.app.backend.get(_owner_key(batch_id))
        if owner is None or _text(owner) != caller.name:
            raise UnknownBatchError(batch_id)
        return self.client.handle(batch_id)

    async def peek(self, caller: Caller, batch_id: str) -> tuple[bool, ScoreResult]:
        """Whether the batch is complete, and what is back of it (``ScoreHandle.partial``)."""
        handle = await self.reopen(caller, batch_id)
        try:
            return await run_in_threadpool(lambda: (handle.ready(), handle.partial()))
        finally:
            handle.detach()

    async def collect(self, caller: Caller, batch_id: str, timeout: float | None) -> ScoreResult:
        """``ScoreHandle.get`` on the caller's batch; the batch (and its owner record) is gone after."""
        handle = await self.reopen(caller, batch_id)
        result = await self.wait(handle, self.timeout(timeout))
        await run_in_threadpool(self.client.app.backend.delete, _owner_key(batch_id))
        return result

    # -- what is served --------------------------------------------------------------------------------

    def scorers(self, caller: Caller) -> dict[str, str | None]:
        """The fingerprint of each reward the caller may call that a live worker serves now."""
        self.connect()
        wanted = [r for r in sorted(self.client.known_rewards) if caller.may_call(r)]
        served = self.served()
        wanted = [r for r in wanted if served is None or r in served]
        return self.client.scorers(wanted) if wanted else {}

    def served(self) -> set[str] | None:
        """The rewards live workers serve now; None where the client does not check (embedded worker,
        another broker than Redis, REWARDQ_SERVE_WAIT=0): then every known reward counts as served."""
        if not checks_serving(self.client.settings):
            return None
        return served_rewards(a for a in read_announcements(self._broker()) if not a.starting)

    def problems(self) -> list[str]:
        """Why the gateway is not ready (empty: ready). The answer needs no key, so it names no reward:
        the log does."""
        try:
            self.connect()
            if str(self.client.settings.broker_url or "").startswith(REDIS_SCHEMES):
                self._broker().ping()
            served = self.served()
        except Exception as e:
            log.warning("not ready: the broker is unreachable: %s", e)
            return ["the broker is unreachable"]
        missing = [] if served is None else [r for r in self.config.needed_rewards() if r not in served]
        if missing:
            log.warning("not ready: no live worker serves %s", ", ".join(missing))
            return [f"{len(missing)} reward(s) the gateway needs have no live worker"]
        return []

    def _broker(self) -> Any:
        """A redis-py client of the broker's Redis."""
        if self._redis is None:
            self._redis = redis_client(self.client.settings, socket_timeout=5.0, socket_connect_timeout=5.0)
        return self._redis

    def connect(self) -> None:
        """Connect the client once (BrokerUnavailable when the broker cannot be reached)."""
        with self._celery:
            self.client.app  # noqa: B018 - connects, or starts the embedded worker

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        with self._celery:
            self.client.close()


def _owner_key(batch_id: str) -> str:
    return f"{OWNER_PREFIX}{batch_id}"


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class _Poll:
    """The schedule of a wait that reads a batch's state between pauses (``wait`` on the event loop,
    ``produce`` on a thread): pauses from FIRST_PAUSE_S doubling up to ``last_pause`` within ``limit``
    seconds, and a look for lost chunks every RESEND_CHECK_S, as ``ScoreHandle.get`` does between its
    waits."""

    def __init__(self, limit: float, last_pause: float) -> None:
        self.started = self.looked = time.monotonic()
        self.limit = limit
        self.last_pause = last_pause
        self._next = FIRST_PAUSE_S

    def pause(self) -> float | None:
        """Seconds to sleep before the next read, or None once ``limit`` has passed."""
        left = self.left(self.limit)
        if left <= 0:
            return None
        pause = min(self._next, left)
        self._next = min(2 * self._next, self.last_pause)
        return pause

    def resend_due(self) -> bool:
        """Whether it is time to look for lost chunks again (then not for another RESEND_CHECK_S)."""
        if time.monotonic() - self.looked < RESEND_CHECK_S:
            return False
        self.looked = time.monotonic()
        return True

    def left(self, seconds: float) -> float:
        """What is left of ``seconds`` counted from the start of the wait (never below 0)."""
        return max(0.0, seconds - (time.monotonic() - self.started))
