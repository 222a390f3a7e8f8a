"""Scoring CPU rewards (``runs_in = "child"``) in killable processes, each chunk answered by its deadline.

Each worker process keeps one supervised pebble pool (:class:`ChildPool`) of one process for each task it
runs at once (a threads pool's concurrency, else one) plus :data:`SPARE_CHILDREN`, shared by all its CPU
rewards and closed with the process's resources. A child builds and sets up each
reward itself, from the rewards file: those the worker was started for when the child starts (a
replacement is ready for them at once), any other on its first chunk. ``score`` runs on the child's main
thread, so math-verify's signal timeouts work there. A reward that cannot be built in a child fails the
worker's start. A child leads its own process group; stopping it kills the whole group (what the reward
started: a subprocess, a sandbox). A child is also killed when its worker process dies (Linux's
parent-death signal), even by SIGKILL.

A chunk has its reward's ``time_limit`` seconds (:class:`ChildScorer`). The whole-chunk call gets
:data:`BATCH_SHARE` of them; past that its child is stopped and the chunk's samples are called one each,
in parallel on the pool, until the chunk's deadline, so that one sample that hangs costs only itself
(not for a ``function`` reward with ``isolate_errors = false``: its values depend on the whole batch, so
its call gets the whole time; for a reward that sees groups, each group is called alone rather than each
sample). What is not done then is ``timeout``.

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
from contextlib import contextmanager, suppress
from multiprocessing import current_process
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.process import AuthenticationString  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from pebble import ProcessExpired, ProcessFuture, ProcessPool

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.groups import group_indices
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process import metrics
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Reward, Score
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.turns import score_samples

log = logging.getLogger(__name__)

SPARE_CHILDREN = 1
"""Processes per worker process beyond one for each task it runs at once: after a timed-out chunk call,
the spare and the others score its samples one each while the stopped one is replaced."""
BATCH_SHARE = 0.5
"""The part of a chunk's time limit its whole-chunk call may use before the samples are called alone."""
SETUP_TIMEOUT_S = 300.0
"""How long a child may take to build and set up a reward at worker start."""


class ChildDied(RuntimeError):
    """Raised when a reward's call ended the child process it ran in (a crash, a kill, an exit)."""


def _died(error: ProcessExpired) -> str:
    code = error.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return f"the reward's process died during the call ({how})"


class ChildPool:
    """A worker process's killable children, shared by its CPU rewards."""

    def __init__(
        self, rewards_file: Path | None, serving: Sequence[str], settings: Settings, tasks_at_once: int = 1
    ) -> None:
        self.pool = ProcessPool(
            max_workers=tasks_at_once + SPARE_CHILDREN,
            initializer=_start_child,
            initargs=(rewards_file, list(serving), settings),
            context=_CONTEXT,
        )

    def close(self) -> None:
        """Stop the children (their process groups) and wait for them."""
        self.pool.stop()
        self.pool.join()


class ChildScorer:
    """One reward scored in the process's children; ``score`` answers by the chunk's deadline."""

    def __init__(self, reward: Reward, children: ChildPool) -> None:
        self.reward = reward
        self.name = reward.name
        self.limit = reward.time_limit
        self.split = getattr(reward.options, "isolate_errors", True)
        self._pool = children.pool
        check = self._pool.schedule(_setup, (self.name,))
        try:
            check.result(timeout=SETUP_TIMEOUT_S)
        finally:
            check.cancel()  # one still running past the time (a no-op once done)

    @property
    def fingerprint(self) -> str:
        return self.reward.fingerprint

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        """The chunk's scores, each ``timeout`` that was not done by the deadline. An exception the
        reward raised on the whole chunk is raised here, as an in-process call would; a chunk whose call
        ended its process (a crash, a kill) is scored one sample at a time too, so that the sample that
        did it fails alone."""
        deadline = time.monotonic() + self.limit
        chunk = list(samples)
        units = _units(self.reward, chunk)
        alone = self.split and len(units) > 1
        call = self._pool.schedule(_score, (self.name, _sent(chunk)))
        try:
            return _received(call.result(timeout=self.limit * BATCH_SHARE if alone else self.limit))
        except FutureTimeout:
            call.cancel()  # stops its child (the process group)
            metrics.deadline_hit(self.name, "killed")
            if not alone:
                return [self._timed_out()] * len(chunk)
            what = f"ran past {self.limit * BATCH_SHARE:.3g}s; stopped"
        except ProcessExpired as e:
            if not alone:
                raise ChildDied(_died(e)) from e
            what = _died(e)
        parts = "group" if self.reward.sees == "group" else "sample"
        log.warning(
            "reward %s: a call of %d samples %s; scoring each %s alone", self.name, len(chunk), what, parts
        )
        return self._one_each(chunk, units, deadline)

    def _one_each(self, chunk: list[Sample], units: list[list[int]], deadline: float) -> list[Score]:
        """Each unit (a sample, or a group's samples) of the chunk scored in a call of its own."""
        calls: list[ProcessFuture] = [
            self._pool.schedule(_score, (self.name, _sent([chunk[i] for i in unit]))) for unit in units
        ]
        wait(calls, timeout=max(0.0, deadline - time.monotonic()))
        scores: list[Score] = [self._timed_out()] * len(chunk)
        for unit, call in zip(units, calls, strict=True):
            if not call.done():
                call.cancel()
                metrics.deadline_hit(self.name, "killed")
                continue
            if isinstance(error := call.exception(), ProcessExpired):
                got = [Score.failed(f"{ChildDied.__name__}: {_died(error)}")] * len(unit)
            elif error is not None:
                got = [Score.failed(f"{type(error).__name__}: {error}")] * len(unit)
            elif len(result := call.result()) != len(unit):
                got = [Score.failed(f"returned {len(result)} scores for {len(unit)} samples")] * len(unit)
            else:
                got = _received(result)
            for i, score in zip(unit, got, strict=True):
                scores[i] = score
        return scores

    def _timed_out(self) -> Score:
        return Score.timed_out(f"reward {self.name!r} did not answer within its timeout of {self.limit:g}s")

    def close(self) -> None:
        """Nothing of its own: the children are the process's (:class:`ChildPool`)."""


PR_SET_PDEATHSIG = 1


class _Served:
    """In a child: each reward it built and set up, or why it could not (an error is never raised in
    pebble's initializer, which would then start the child again and again)."""

    def __init__(self, rewards_file: Path | None, settings: Settings) -> None:
        self.rewards_file = rewards_file
        self.settings = settings
        self.rewards: dict[str, Reward | str] = {}
        self._config: RewardsConfig | None = None
        self._resources: WorkerResources | None = None

    def reward(self, name: str) -> Reward:
        """The reward ``name``, built and set up here on first use; RewardSetupError if it cannot be."""
        if name not in self.rewards:
            try:
                self._config = self._config or RewardsConfig.load(self.rewards_file)
                self._resources = self._resources or WorkerResources(self.settings)
                built = self._config.build(name)
                built.setup(self._resources)
                self.rewards[name] = built
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                self.rewards[name] = f"reward {name!r} failed to set up in its process: {error}"
        served = self.rewards[name]
        if isinstance(served, str):
            raise RewardSetupError(served)
        return served


_served: list[_Served] = []  # the child's one


def _start_child(rewards_file: Path | None, serving: list[str], settings: Settings) -> None:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _stop_group)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    served = _Served(rewards_file, settings)
    _served.append(served)
    for name in serving:
        with suppress(RewardSetupError):  # kept, raised when a chunk of it comes
            served.reward(name)


def _stop_group(signum: int, frame: types.FrameType | None) -> None:
    """The pool stops a child with SIGTERM: end the child and everything it started, at once."""
    os.killpg(0, signal.SIGKILL)


def _setup(name: str) -> None:
    _served[0].reward(name)


def _score(name: str, samples: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    scores = score_samples(_served[0].reward(name), [Sample.model_construct(**fields) for fields in samples])
    return [tuple(getattr(score, field) for field in SCORE_FIELDS) for score in scores]


# What crosses to a child and back: a sample's fields (validated already; pickling the model costs 6x)
# and a score's fields as a tuple (4x cheaper than the dataclass).
SCORE_FIELDS = Score.__slots__


def _units(reward: Reward, chunk: list[Sample]) -> list[list[int]]:
    """What a chunk's samples are scored in when called apart: each sample, or each group's samples."""
    if reward.sees == "group":
        return group_indices([sample.group_key for sample in chunk])
    return [[i] for i in range(len(chunk))]


def _sent(samples: list[Sample]) -> list[dict[str, Any]]:
    return [sample.__dict__ for sample in samples]


def _received(scores: list[tuple[Any, ...]]) -> list[Score]:
    return [Score(*fields) for fields in scores]


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
