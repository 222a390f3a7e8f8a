"""Which rewards live workers serve: their announcements in Redis, and the producer's check that every
reward of a request has a live worker before anything is enqueued.

Each worker writes ``rewardq:worker:<node>`` (an :class:`~rewardq.wire.announcement.Announcement`)
every heartbeat with a time to live of three heartbeats
(rewardq.workers.runtime.heartbeat), so a worker that died is gone from the announcements within that time.
The nodes are also kept in the sorted set ``rewardq:workers`` so that readers find the announcements
without scanning the keyspace (which the judges' cache shares and may fill with millions of keys).
A worker that is about to consume first writes its announcement marked ``starting`` to claim its rewards'
scorers (rewardq.scorers); producers do not count it as serving until its first heartbeat.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

from redis.exceptions import RedisError

from rewardq.connection import masked
from rewardq.scorers import RunPins, Scorers, scorers_of, served_fingerprint
from rewardq.sentinel import master_client, tls_options, uses_sentinel
from rewardq.wire.announcement import Announcement
from rewardq.wire.errors import BrokerUnavailable, UnservedRewardError
from rewardq.wire.keys import WORKERS_INDEX, announcement_key
from rewardq.wire.settings import SENTINEL_SCHEME, Settings

log = logging.getLogger(__name__)

ANNOUNCEMENT_TTL_BEATS = 3  # an announcement lives this many heartbeats past its last refresh
POLL_S = 0.5  # how often a waiting producer reads the announcements again
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", SENTINEL_SCHEME)


def redis_client(settings: Settings, url: str | None = None, **options: Any) -> Any:
    """A redis-py client for ``url`` (default: the broker's) with rewardq's TLS options; for a
    ``sentinel://`` URL, a client of the master that follows it through a failover (rewardq.sentinel).
    Every plain Redis client of rewardq is built here."""
    import redis

    target = url or settings.broker_url or ""
    if uses_sentinel(target):
        return master_client(settings, target, **options)
    return redis.Redis.from_url(target, **tls_options(settings, target), **options)


def checks_serving(settings: Settings) -> bool:
    """True when a producer should check for live workers: a Redis broker and a positive serve_wait."""
    return (
        bool(settings.broker_url)
        and settings.serve_wait > 0
        and str(settings.broker_url).startswith(REDIS_SCHEMES)
    )


def read_announcements(client: Any) -> list[Announcement]:
    """Every live worker's announcement (the index, then MGET): the announcement's own expiry in Redis
    decides who is live; an unreadable one is skipped."""
    nodes = client.zrange(WORKERS_INDEX, 0, -1)
    if not nodes:
        return []
    keys = [announcement_key(node.decode(errors="replace")) for node in nodes]
    # None: expired since the index was read (a dead worker)
    workers = [Announcement.read(raw) for raw in client.mget(keys) if raw is not None]
    return [entry for entry in workers if entry is not None]


def served_rewards(announcements: Iterable[Announcement]) -> set[str]:
    """The rewards at least one of these workers serves."""
    return {reward for entry in announcements for reward in entry.rewards}


class ServingCheck:
    """Refuses a request for a reward no live worker serves, after waiting ``settings.serve_wait``
    seconds for one to appear. A reward found served is trusted for ``settings.heartbeat`` seconds, so
    most submits pay no round trip. It also learns the scorer fingerprint each reward is served with, and
    keeps a run to the fingerprints it began with (rewardq.scorers)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._served_until: dict[str, float] = {}
        self._scorers: Scorers = {}
        self._pins = RunPins()

    def require(self, rewards: Iterable[str], *, since: float | None = None) -> None:
        """Return once every reward in ``rewards`` has a live worker; raise UnservedRewardError naming
        those still without one ``serve_wait`` seconds after ``since`` (a ``time.monotonic()`` reading,
        e.g. when a command started; default now). Says once, in the log, what it waits for."""
        wanted = list(dict.fromkeys(rewards))
        started = time.monotonic() if since is None else since
        said = False
        while True:
            now = time.monotonic()
            missing = [r for r in wanted if self._served_until.get(r, 0.0) <= now]
            if not missing:
                return
            served = self.read()
            now = time.monotonic()
            for reward in served:
                self._served_until[reward] = now + self.settings.heartbeat
            missing = [r for r in missing if r not in served]
            if not missing:
                return
            left = started + self.settings.serve_wait - now
            if left <= 0:
                raise UnservedRewardError(missing, self.settings.serve_wait)
            if not said:
                # the time left, rounded up: the command's set-up may have used part of serve_wait
                log.warning("waiting up to %ds for a worker serving: %s", math.ceil(left), ", ".join(missing))
                said = True
            time.sleep(min(POLL_S, left))

    def read(self) -> set[str]:
        """Read the announcements now: returns the rewards live workers serve, and learns the
        fingerprints they serve them with."""
        announcements = [a for a in self._announcements() if not a.starting]
        self._scorers.update(scorers_of(announcements))
        return served_rewards(announcements)

    def fingerprints(self, rewards: Iterable[str]) -> dict[str, str | None]:
        """The fingerprint each reward is served with, as of the last read (None: no live worker
        announces one); raises ScorerMismatchError for a reward live workers serve with several."""
        return {reward: served_fingerprint(self._scorers, reward) for reward in rewards}

    def pin(self, run_id: str, rewards: Iterable[str], *, allow_change: bool = False) -> None:
        """Keep ``run_id`` to the fingerprints its rewards were first served with: raises
        ScorerMismatchError or ScorerChangedError (unless ``allow_change``) before anything is enqueued."""
        served = self.fingerprints(rewards)
        try:
            self._pins.check(self._redis(), run_id, served, allow_change=allow_change)
        except RedisError as e:
            raise BrokerUnavailable(
                f"cannot read the scorers of run {run_id!r} from {masked(self.settings.broker_url)}: {e}"
            ) from e

    def _redis(self) -> Any:
        if self._client is None:
            self._client = redis_client(self.settings, socket_timeout=5.0, socket_connect_timeout=5.0)
        return self._client

    def _announcements(self) -> list[Announcement]:
        try:
            return read_announcements(self._redis())
        except Exception as e:
            raise BrokerUnavailable(
                f"cannot read the workers' announcements from {masked(self.settings.broker_url)}: {e}"
            ) from e

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
