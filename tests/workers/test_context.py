"""The worker's per-process context: built in the process that uses it, closed with it."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import redis

from rewardq import Settings
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Reward, Score
from rewardq.workers.rewards.config import RewardsConfig, RewardSpec
from rewardq.workers.runtime.context import WorkerRuntime
from tests.conftest import RedisServer

closed: list[str] = []


class Holder(Reward):
    """A reward that sets up a shared client, and notes what is closed when."""

    kind = "holder"
    runs_in = "process"  # what it sets up is in this process

    def setup(self, resources: WorkerResources) -> None:
        resources.shared("client", Client)

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        return [Score.ok(1.0) for _ in samples]

    def close(self) -> None:
        closed.append(self.name)


class Client:
    def close(self) -> None:
        closed.append("client")


def runtime(settings: Settings) -> WorkerRuntime:
    config = RewardsConfig.load(None)
    config.kinds.add("holder", Holder)
    config.specs["held"] = RewardSpec("held", "holder", Holder.Options())
    return WorkerRuntime(settings, config)


def test_a_forked_child_builds_its_own_and_leaves_its_parents_open() -> None:
    rt = runtime(Settings.from_env({}))
    parent = rt.reward("held")
    closed.clear()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its reward is its own; closing it closes only its own
        ok = rt.reward("held") is not parent and rt.process.pid == os.getpid()
        rt.close()
        os.write(write, b"1" if ok and closed == ["held", "client"] else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert closed == [] and rt.reward("held") is parent
    rt.close()
    assert closed == ["held", "client"]  # the reward before what it set up on


def test_closing_ends_the_broker_connection_and_the_next_use_opens_a_new_one(
    redis_server: RedisServer,
) -> None:
    rt = runtime(Settings.from_env({}, broker_url=redis_server.url))
    observer = redis.Redis.from_url(redis_server.url)

    def others() -> int:
        return len(observer.client_list()) - 1

    def others_once_settled() -> int:
        """The server drops a closed client when it reads the close: wait for that, briefly."""
        deadline = time.monotonic() + 10
        while others() and time.monotonic() < deadline:
            time.sleep(0.02)
        return others()

    assert rt.deliveries.count("t1") == 2 and others() == 1  # a redelivery: the first is implied
    rt.close()
    assert others_once_settled() == 0
    assert rt.deliveries.current("t1") == 2 and others() == 1  # the counts are the broker's, kept
    rt.close()
    observer.close()
