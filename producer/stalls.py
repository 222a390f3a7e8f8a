"""Saying, once, why a rescoring run has had no result for a while.

A worker that dies holding tasks leaves them in kombu's ``unacked`` hash until the live workers give them
back to their queues (``VISIBILITY_TIMEOUT + HEARTBEAT`` after its last heartbeat); the client meanwhile
sees no result. When no chunk has come back for ``STALL_BEATS`` heartbeats, :class:`StallNote` reads what
``rewardq status`` reads, cheaply (the announcements and the length of ``unacked``), and says which wait it
is: tasks held by no live worker (a lost worker's, to be redelivered) or a reward no live worker serves.
Busy workers holding every task in flight (a slow reward) are no stall and are not reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from rewardq.serving import read_announcements, redis_client, served_rewards
from rewardq.wire.keys import UNACKED_KEY
from rewardq.wire.settings import Settings

log = logging.getLogger(__name__)

STALL_BEATS = 2  # heartbeats without a result before the note looks at the broker
SOCKET_TIMEOUT_S = 2.0


class StallNote:
    """A watcher thread, while the ``with`` block runs; :meth:`progress` says that a result came back."""

    def __init__(self, settings: Settings, rewards: Iterable[str]) -> None:
        self.settings = settings
        self.rewards = list(rewards)
        self.after = STALL_BEATS * settings.heartbeat
        self._last = time.monotonic()
        self._said = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def progress(self) -> None:
        self._last = time.monotonic()
        self._said = False

    def __enter__(self) -> StallNote:
        self._thread = threading.Thread(target=self._run, name="rewardq-stall-note", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * SOCKET_TIMEOUT_S)

    def _run(self) -> None:
        client = redis_client(
            self.settings, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        try:
            while not self._stop.wait(min(1.0, self.settings.heartbeat)):
                idle = time.monotonic() - self._last
                if self._said or idle < self.after:
                    continue
                try:
                    why = self._why(client)
                except Exception as e:  # a lost broker is reported by the run itself
                    log.debug("stall note: cannot read the broker: %s", e)
                    continue
                if why is not None:  # else look again: a just-lost worker's announcement may still be live
                    log.warning("no result for %.0fs: %s", idle, why)
                    self._said = True
        finally:
            client.close()

    def _why(self, client: Any) -> str | None:
        workers = read_announcements(client)
        served = served_rewards(workers)
        unserved = [r for r in self.rewards if r not in served]
        if unserved:
            return (
                f"no live worker serves {', '.join(unserved)}; start one with "
                f"`rewardq worker --rewards {','.join(unserved)}`"
            )
        orphaned = int(client.hlen(UNACKED_KEY)) - sum(w.held for w in workers)
        if orphaned <= 0:
            return None  # every task in flight is held by a live worker: a slow reward, not a stall
        s = self.settings
        return (
            f"waiting for the broker to redeliver {orphaned} task{'s' if orphaned > 1 else ''} of a lost "
            f"worker (within VISIBILITY_TIMEOUT + HEARTBEAT, {s.visibility_timeout + s.heartbeat:g}s)"
        )
