"""The gateway's fixtures: keys, a redis-server with a worker, and the app under a real uvicorn server
(in a thread of the test's process, on a free port)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from rewardq import RewardClient, Settings
from rewardq.gateway.app import create_app
from rewardq.gateway.config import GatewayConfig, KeyConfig, hash_key, new_key
from rewardq.wire.keys import SAMPLES_PREFIX, priority_lists
from rewardq.wire.schema import queue_for
from tests.conftest import RedisServer, WorkerProcess, free_port

CORRECT = "<think>2+2 is 4</think><answer>\\boxed{4}</answer>"
WRONG = "<think>guess</think><answer>\\boxed{5}</answer>"
UNFORMATTED = "The answer is \\boxed{4}."


def rows(n: int) -> list[dict[str, Any]]:
    """Samples the rule rewards score 1.0, 0.0 or leave unformatted, in turn."""
    kinds = [CORRECT, WRONG, UNFORMATTED]
    return [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "completion": kinds[i % 3], "solution": "$4$"}
        for i in range(n)
    ]


@dataclass(frozen=True)
class Keys:
    """Two keys: ``a`` may score runs ``team-a-*`` with accuracy and format, ``b`` runs ``team-b-*``."""

    a: str
    b: str

    def config(self, **key_options: Any) -> GatewayConfig:
        return GatewayConfig(
            keys=[
                KeyConfig(
                    name="team-a",
                    hash=hash_key(self.a),
                    runs=["team-a-"],
                    rewards=["accuracy", "format"],
                    **key_options,
                ),
                KeyConfig(name="team-b", hash=hash_key(self.b), runs=["team-b-"], rewards=["*"]),
            ]
        )


@pytest.fixture
def keys() -> Keys:
    return Keys(new_key(), new_key())


class Served:
    """An app under a uvicorn server in a thread; ``url`` is its base URL."""

    def __init__(self, app: Any, ssl: dict[str, Any] | None = None) -> None:
        self.app = app
        self.port = free_port()
        scheme = "https" if ssl else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, **(ssl or {})
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(
        self, key: str | None = None, headers: dict[str, str] | None = None, **options: Any
    ) -> httpx.Client:
        """An HTTP client of the server, presenting ``key`` as a bearer token (or ``headers``)."""
        sent = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.Client(base_url=self.url, headers={**sent, **(headers or {})}, timeout=120, **options)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Factory: ``serve(config, client)`` → the app under a running uvicorn server."""
    servers: list[Served] = []

    def start(config: GatewayConfig, client: RewardClient | None = None, **ssl: Any) -> Served:
        served = Served(create_app(config, client), ssl or None)
        servers.append(served)
        served.start()
        return served

    try:
        yield start
    finally:
        for served in servers:
            served.stop()


@pytest.fixture
def worker(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> WorkerProcess:
    """A real worker serving accuracy and format."""
    return start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy,format", "--concurrency", "1")


@pytest.fixture
def settings(redis_server: RedisServer, sqlite_url: str) -> Settings:
    return Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=4)


@pytest.fixture
def client(settings: Settings) -> Iterator[RewardClient]:
    with RewardClient(settings) as c:
        yield c


@pytest.fixture
def gateway(keys: Keys, client: RewardClient, worker: WorkerProcess, serve: Callable[..., Served]) -> Served:
    """The gateway with keys ``a`` and ``b`` in front of a live worker."""
    return serve(keys.config(), client)


def enqueued(redis_url: str, rewards: tuple[str, ...] = ("accuracy", "format")) -> dict[str, int]:
    """What a submission leaves in Redis: messages on the rewards' queues, stored samples, batches."""
    r = redis.Redis.from_url(redis_url)
    try:
        return {
            "messages": sum(r.llen(q) for reward in rewards for q in priority_lists(queue_for(reward))),
            "stored samples": len(list(r.scan_iter(f"{SAMPLES_PREFIX}*"))),
            "batches": len(list(r.scan_iter("rewardq-batch-*"))),
        }
    finally:
        r.close()


NOTHING = {"messages": 0, "stored samples": 0, "batches": 0}


def path_of(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
