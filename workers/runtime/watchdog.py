"""Scoring a reward that runs in the worker process (``runs_in = "process"``: models, judges) by a deadline.

Each chunk's call runs on a thread of its own; the task waits for it ``time_limit`` seconds, then answers
the chunk ``timeout`` and goes on (persist, return). A thread cannot be stopped, so the reward is then
*stuck* until that call returns. If it returns within the grace period (``min(30 s, time_limit)``)
the reward is free again. If not, the worker gives up on it: it stops consuming and exits with
:data:`EXIT_STUCK` for its supervisor to restart it; the tasks it holds go back to the broker (kombu's
Redis transport restores a channel's unacknowledged messages when the worker's connection closes). A
chunk that arrives while the reward is stuck waits for that verdict: it is scored if the reward is
freed, handed back (:class:`HandBack`, requeued) if not. The embedded worker lives in the trainer's
process and never exits: its chunks fail while the reward stays stuck.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from rewardq.wire.schema import Sample
from rewardq.workers.process import metrics
from rewardq.workers.rewards.base import Reward, Score
from rewardq.workers.rewards.turns import score_samples

log = logging.getLogger(__name__)

EXIT_STUCK = 75
"""The worker's exit status when a reward stays stuck (EX_TEMPFAIL: restart me)."""
STUCK_GRACE_S = 30.0
"""At most this long after its deadline a stuck call may still return before the worker gives up."""
SHUTDOWN_BACKSTOP_S = 60.0
"""A worker that gave up and has not exited this long after (a warm shutdown that hangs) exits at once."""


class RewardStuck(Exception):
    """Raised when a chunk arrives for a reward whose earlier call is still running past its grace."""


class HandBack(RewardStuck):
    """Raised instead in a worker that exits: the task goes back to the broker, unanswered, for another."""


class WatchedScorer:
    """One reward called in the worker process, each chunk answered by its deadline."""

    def __init__(self, reward: Reward, *, embedded: bool) -> None:
        self.reward = reward
        self.name = reward.name
        self.limit = reward.time_limit
        self.grace = min(STUCK_GRACE_S, self.limit)
        self._embedded = embedded
        self._lock = threading.Lock()
        self._stuck: threading.Thread | None = None
        self._verdict_at = 0.0
        self._gave_up = False

    @property
    def fingerprint(self) -> str:
        return self.reward.fingerprint

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        """The chunk's scores, or every sample ``timeout`` when the call outlives the deadline."""
        self._wait_while_stuck()
        outcome: list[Any] = []
        call = threading.Thread(
            target=self._call, args=(samples, outcome), name=f"rewardq-score-{self.name}", daemon=True
        )
        call.start()
        call.join(self.limit)
        if outcome:
            if isinstance(outcome[0], BaseException):
                raise outcome[0]
            result: list[Score] = outcome[0]
            return result
        self._mark_stuck(call)
        metrics.deadline_hit(self.name, "abandoned")
        error = f"reward {self.name!r} did not answer within its timeout of {self.limit:g}s"
        return [Score.timed_out(error)] * len(samples)

    def _call(self, samples: Sequence[Sample], outcome: list[Any]) -> None:
        try:
            outcome.append(score_samples(self.reward, samples))
        except BaseException as e:  # raised again on the task's thread
            outcome.append(e)

    def _mark_stuck(self, call: threading.Thread) -> None:
        with self._lock:
            if self._stuck is not None and self._stuck.is_alive():
                return
            self._stuck, self._verdict_at = call, time.monotonic() + self.grace
        log.error(
            "reward %s did not answer within %gs: chunk answered timeout; waiting %gs for the call to end",
            self.name,
            self.limit,
            self.grace,
        )
        verdict = threading.Timer(self.grace, self._judge, args=(call,))
        verdict.daemon = True
        verdict.start()

    def _judge(self, call: threading.Thread) -> None:
        if call.is_alive():
            self._give_up()

    def _wait_while_stuck(self) -> None:
        with self._lock:
            stuck, verdict_at = self._stuck, self._verdict_at
        if stuck is None:
            return
        stuck.join(max(0.0, verdict_at - time.monotonic()))
        if not stuck.is_alive():
            with self._lock:
                if self._stuck is stuck:
                    self._stuck, self._gave_up = None, False
            return
        self._give_up()
        error = f"reward {self.name!r} is stuck in a call that outlived its timeout of {self.limit:g}s"
        metrics.deadline_hit(self.name, "handed_back")
        raise RewardStuck(error) if self._embedded else HandBack(error)

    def _give_up(self) -> None:
        with self._lock:
            if self._gave_up:
                return
            self._gave_up = True
        if self._embedded:
            log.error("reward %s is stuck past its deadline: its chunks fail until it returns", self.name)
            return
        log.critical(
            "reward %s is stuck %gs past its deadline: this worker hands its tasks back and exits (%d) "
            "for its supervisor to restart it",
            self.name,
            self.grace,
            EXIT_STUCK,
        )
        from celery.worker import state

        state.should_stop = EXIT_STUCK  # a warm shutdown: the consumer stops, its connection restores
        backstop = threading.Timer(SHUTDOWN_BACKSTOP_S, os._exit, args=(EXIT_STUCK,))
        backstop.daemon = True
        backstop.start()

    def close(self) -> None:
        self.reward.close()
