"""Scoring a CPU reward (``runs_in = "child"``) in killable processes, answered by its deadline.

Each worker process keeps, per such reward, a supervised pool of :data:`POOL_SIZE` pebble processes,
started when the reward is first built (at worker start: a reward that cannot be built in a child fails
the start). Each child builds and sets up the reward itself, from the rewards file, and calls ``score``
on its main thread (math-verify's signal timeouts work there). A child leads its own process group;
stopping it kills the whole group (what the reward started: a subprocess, a sandbox). A child is also
killed when its worker process dies (Linux's parent-death signal), even by SIGKILL.

A chunk has ``time_limit`` seconds. The whole-chunk call gets :data:`BATCH_SHARE` of them; past that its
child is stopped and the chunk's samples are called one each, in parallel on the pool, until the
chunk's deadline, so that one sample that hangs costs only itself. What is not done then is ``timeout``.

The children are spawned (the worker process has threads, and a Celery prefork child is itself a fork),
without re-running the worker's ``__main__`` (a trainer's script that starts the embedded worker).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait
from contextlib import contextmanager
from multiprocessing import current_process
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.process import AuthenticationString  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from pebble import ProcessFuture, ProcessPool

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Reward, Score
from rewardq.workers.rewards.config import RewardsConfig

log = logging.getLogger(__name__)

POOL_SIZE = 2
"""Processes per reward per worker process: one scores a chunk; after a timed-out chunk call, both
score its samples one each while the stopped one is replaced."""
BATCH_SHARE = 0.5
"""The part of a chunk's time limit its whole-chunk call may use before the samples are called alone."""
SETUP_TIMEOUT_S = 300.0
"""How long a child may take to build and set up the reward at worker start."""


class ChildScorer:
    """One reward scored in a pool of killable children; ``score`` answers by the chunk's deadline."""

    def __init__(self, reward: Reward, rewards_file: Path | None, settings: Settings) -> None:
        self.reward = reward
        self.name = reward.name
        self.limit = reward.time_limit
        self._pool = ProcessPool(
            max_workers=POOL_SIZE,
            initializer=_start_child,
            initargs=(rewards_file, reward.name, settings),
            context=_CONTEXT,
        )
        try:
            self._pool.schedule(_setup_error).result(timeout=SETUP_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    @property
    def fingerprint(self) -> str:
        return self.reward.fingerprint

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        """The chunk's scores, each ``timeout`` that was not done by the deadline. An exception the
        reward raised on the whole chunk is raised here, as an in-process call would."""
        started = time.monotonic()
        deadline = started + self.limit
        chunk = list(samples)
        call = self._pool.schedule(_score, (chunk,))
        try:
            return call.result(timeout=self.limit * BATCH_SHARE if len(chunk) > 1 else self.limit)
        except FutureTimeout:
            call.cancel()  # stops its child (the process group)
        if len(chunk) == 1:
            return [self._timed_out()]
        log.warning(
            "reward %s: a call of %d samples ran past %.3gs; stopped, scoring each sample alone",
            self.name,
            len(chunk),
            self.limit * BATCH_SHARE,
        )
        return self._one_each(chunk, deadline)

    def _one_each(self, chunk: list[Sample], deadline: float) -> list[Score]:
        calls: list[ProcessFuture] = [self._pool.schedule(_score, ([sample],)) for sample in chunk]
        wait(calls, timeout=max(0.0, deadline - time.monotonic()))
        scores = []
        for call in calls:
            if not call.done():
                call.cancel()
                scores.append(self._timed_out())
            elif (error := call.exception()) is not None:
                scores.append(Score.failed(f"{type(error).__name__}: {error}"))
            elif len(result := call.result()) != 1:
                scores.append(Score.failed(f"returned {len(result)} scores for 1 sample"))
            else:
                scores.append(result[0])
        return scores

    def _timed_out(self) -> Score:
        return Score.timed_out(f"reward {self.name!r} did not answer within its timeout of {self.limit:g}s")

    def close(self) -> None:
        """Stop the children (their process groups) and wait for them."""
        self._pool.stop()
        self._pool.join()


# In a child: the reward it serves, or why it could not be set up (never raised in the initializer,
# where pebble would restart the child forever).
_served: dict[str, Any] = {}


PR_SET_PDEATHSIG = 1


def _start_child(rewards_file: Path | None, name: str, settings: Settings) -> None:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _stop_group)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        reward = RewardsConfig.load(rewards_file).build(name)
        reward.setup(WorkerResources(settings))
        _served["reward"] = reward
    except Exception as e:
        _served["error"] = f"reward {name!r} failed to set up in its process: {type(e).__name__}: {e}"


def _stop_group(signum: int, frame: types.FrameType | None) -> None:
    """The pool stops a child with SIGTERM: end the child and everything it started, at once."""
    os.killpg(0, signal.SIGKILL)


def _setup_error() -> None:
    if "error" in _served:
        raise RewardSetupError(_served["error"])


def _score(samples: list[Sample]) -> list[Score]:
    _setup_error()
    reward: Reward = _served["reward"]
    return reward.score(samples)


class _Process(SpawnProcess):
    """A spawned process that does not import the parent's ``__main__`` (a trainer's script), and that a
    Celery prefork child may start: billiard marks that child daemonic (our children die with it all the
    same) and gives it an authentication key of billiard's type, which multiprocessing cannot send."""

    def start(self) -> None:
        config = current_process()._config  # type: ignore[attr-defined]
        saved = dict(config)
        config.pop("daemon", None)
        key = AuthenticationString(bytes(config["authkey"]))
        config["authkey"] = self._config["authkey"] = key  # type: ignore[attr-defined]
        try:
            super().start()
        finally:
            config.clear()
            config.update(saved)

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        with _main_hidden():
            return SpawnProcess._Popen(process_obj)


@contextmanager
def _main_hidden() -> Iterator[None]:
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _Context(SpawnContext):
    Process = _Process


_CONTEXT = _Context()
