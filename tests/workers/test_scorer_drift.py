"""One scorer per reward, against a redis-server of the test's own and real ``rewardq worker`` processes: a
worker with another scorer for a served reward refuses to start, ``rewardq status`` shows each worker's
fingerprints, a run keeps the scorer it began with (across client processes), ``rewardq score --config``
must match what the workers serve and resumes by their fingerprints, and ``rewardq audit runs`` flags a
run scored by two scorers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.scorers import short
from rewardq.storage import make_engine, upgrade, write_scores
from rewardq.wire.errors import ScorerChangedError, ScorerMismatchError
from rewardq.wire.keys import WORKERS_INDEX, announcement_key, run_scorers_key
from rewardq.wire.schema import queue_for
from rewardq.workers.rewards.config import RewardsConfig
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import rewardq, write_jsonl

pytestmark = pytest.mark.slow

REWARDQ = str(Path(sys.executable).with_name("rewardq"))
ROWS = [{"prompt": "q", "completion": "<think>t</think><answer>7</answer>"}]
STRICT = "[rewards.format]\nkind = \"format\"\npattern = '^<answer>.*</answer>$'\n"
OTHER = "[rewards.format]\nkind = \"format\"\npattern = '^<think>.*</think>$'\n"


def fingerprint(config: Path | None) -> str:
    return RewardsConfig.load(config).build("format").fingerprint


def toml(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_worker(broker_url: str, database_url: str, config: Path) -> subprocess.CompletedProcess[str]:
    """``rewardq worker --rewards format`` with ``config``, run until it exits (a refused start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update(
        {
            "REWARDQ_HOME": os.environ["REWARDQ_HOME"],
            "REWARDQ_BROKER_URL": broker_url,
            "REWARDQ_DATABASE_URL": database_url,
            "REWARDQ_REWARDS": str(config),
            "COLUMNS": "400",
        }
    )
    return subprocess.run(
        [REWARDQ, "worker", "--rewards", "format", "--pool", "solo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_worker_with_another_scorer_for_a_served_reward_refuses_to_start(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    live = start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    strict = toml(tmp_path, "strict.toml", STRICT)
    proc = run_worker(redis_server.url, sqlite_url, strict)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("error: reward 'format' is served by live workers with scorer")
    assert fingerprint(None) in line and fingerprint(strict) in line
    assert "give the changed reward a new name, or stop the old workers first" in line
    assert " ready." not in proc.stdout + proc.stderr
    broker = redis.Redis.from_url(redis_server.url)
    [node] = broker.zrange(WORKERS_INDEX, 0, -1)  # the refused worker withdrew its claim
    assert json.loads(broker.get(announcement_key(node.decode())))["pid"] == live.proc.pid

    # A worker that claimed the reward (written before it reads) but is not consuming yet blocks too:
    # of two workers starting at once with different scorers, the later reader refuses.
    live.stop()
    claim = {"node": "other@host", "rewards": ["format"], "fingerprints": {"format": "format@1:0"}}
    broker.set(announcement_key("other@host"), json.dumps(claim | {"starting": True}), ex=60)
    broker.zadd(WORKERS_INDEX, {"other@host": time.time() + 60})
    proc = run_worker(redis_server.url, sqlite_url, strict)
    assert proc.returncode == 2 and "format@1:0 on other@host" in proc.stderr


def test_status_shows_each_workers_scorer_fingerprints(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    strict = toml(tmp_path, "strict.toml", STRICT)
    start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "format,accuracy",
        "--pool",
        "solo",
        env={"REWARDQ_REWARDS": str(strict)},
    )
    env = {"REWARDQ_BROKER_URL": redis_server.url}
    [worker] = json.loads(rewardq("status", "--json", env=env).stdout)["workers"]
    accuracy = RewardsConfig.load(None).build("accuracy").fingerprint
    assert worker["fingerprints"] == {"format": fingerprint(strict), "accuracy": accuracy}
    table = rewardq("status", env=env).stdout
    assert f"format={short(fingerprint(strict))}" in table and short(fingerprint(strict)) != fingerprint(
        strict
    )


def test_a_run_keeps_its_scorer_across_batches_and_client_processes(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, heartbeat=1)
    old = start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    trainer = RewardClient(settings)
    try:
        assert trainer.score(ROWS, "format", run_id="R", timeout=60).statuses == {"format": ["ok"]}
        assert broker.hgetall(run_scorers_key("R")) == {b"format": fingerprint(None).encode()}

        old.stop()
        strict = toml(tmp_path, "strict.toml", STRICT)
        start_worker(
            redis_server.url,
            sqlite_url,
            "--rewards",
            "format",
            "--pool",
            "solo",
            env={"REWARDQ_REWARDS": str(strict)},
        )
        # the same client process, and a restarted trainer resuming run R: both refused before enqueueing
        with pytest.raises(ScorerChangedError) as info:
            trainer.submit(ROWS, "format", run_id="R")
        with RewardClient(settings) as restarted, pytest.raises(ScorerChangedError):
            restarted.submit(ROWS, "format", run_id="R")
        message = str(info.value)
        assert "\n" not in message and "reward 'format'" in message and "run 'R'" in message
        assert fingerprint(None) in message and fingerprint(strict) in message
        assert broker.llen(queue_for("format")) == 0

        # a new run takes the new scorer; run R changes scorer only when asked to
        assert trainer.score(ROWS, "format", run_id="R2", timeout=60).statuses == {"format": ["ok"]}
        handle = trainer.submit(ROWS, "format", run_id="R", allow_scorer_change=True)
        assert handle.get(timeout=60).statuses == {"format": ["ok"]}
        assert broker.hget(run_scorers_key("R"), "format") == fingerprint(strict).encode()

        # a worker from before fingerprints were announced serving the same reward: refused too
        broker.set(
            announcement_key("old@host"), json.dumps({"node": "old@host", "rewards": ["format"]}), ex=60
        )
        broker.zadd(WORKERS_INDEX, {"old@host": time.time() + 60})
        with RewardClient(settings) as client, pytest.raises(ScorerMismatchError) as mixed:
            client.submit(ROWS, "format", run_id="R3")
        assert "reward 'format' is served by live workers with different scorers" in str(mixed.value)
        assert "old@host" in str(mixed.value) and broker.llen(queue_for("format")) == 0
    finally:
        trainer.close()


def test_score_refuses_a_config_the_workers_do_not_serve_and_resumes_by_their_fingerprints(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    strict = toml(tmp_path, "strict.toml", STRICT)
    start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "format",
        "--pool",
        "solo",
        env={"REWARDQ_REWARDS": str(strict)},
    )
    source = write_jsonl(tmp_path / "in.jsonl", [{"completion": f"<answer>{i}</answer>"} for i in range(40)])
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": sqlite_url,
        "REWARDQ_CHUNK_SIZE": "8",
    }
    args = ["score", str(source), "-r", "format", "-o", str(tmp_path / "out.jsonl"), "--no-progress"]

    other = toml(tmp_path, "other.toml", OTHER)
    proc = rewardq(*args, "--run-id", "c", "--config", str(other), env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("error: reward 'format': --config") and fingerprint(strict) in line
    assert fingerprint(other) in line and "nothing was enqueued" in line
    assert redis.Redis.from_url(redis_server.url).llen(queue_for("format")) == 0

    # The client has no --config (its local default differs from the workers'): resume still finds
    # every score, by the fingerprint the workers announce.
    rewardq(*args, "--run-id", "s", env=env)
    rerun = rewardq(*args, "--run-id", "s", env=env)
    assert "from audit" in rerun.stderr
    [stats] = [
        json.loads(x) for x in rewardq("audit", "stats", "s", "-f", "jsonl", env=env).stdout.splitlines()
    ]
    assert stats["count"] == 40  # the rerun sent nothing: every sample scored once
    rewardq(*args, "--run-id", "s", "--config", str(strict), env=env)  # the workers' own config is fine
    [stats] = [
        json.loads(x) for x in rewardq("audit", "stats", "s", "-f", "jsonl", env=env).stdout.splitlines()
    ]
    assert stats["count"] == 40


def test_audit_runs_flags_a_run_whose_reward_has_rows_from_two_scorers(
    tmp_path: Path, sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)

    def row(i: int, run_id: str, scorer: str) -> dict[str, object]:
        return {
            "run_id": run_id,
            "step": 0,
            "batch_id": f"b{i}",
            "sample_index": 0,
            "sample_hash": f"{i:064x}",
            "reward": "format",
            "scorer": scorer,
            "value": 1.0,
            "status": "ok",
            "latency_ms": 1.0,
            "attempts": 1,
            "worker_host": "w",
        }

    rows = [
        row(i, "drifted", "format@1:aaaaaaaaaaaa" if i < 3 else "format@1:bbbbbbbbbbbb") for i in range(5)
    ]
    rows += [row(i, "steady", "format@1:aaaaaaaaaaaa") for i in range(5, 8)]
    try:
        with engine.begin() as conn:
            write_scores(conn, rows)
    finally:
        engine.dispose()
    env = {"REWARDQ_DATABASE_URL": sqlite_url}
    listed = {
        r["run_id"]: r
        for r in map(json.loads, rewardq("audit", "runs", "-f", "jsonl", env=env).stdout.splitlines())
    }
    assert listed["drifted"]["mixed_scorers"] == ["format"] and listed["steady"]["mixed_scorers"] == []
    table = rewardq("audit", "runs", env=env)
    assert "mixed_scorers" in table.stdout
    assert "1 run(s) scored with more than one scorer for a reward" in table.stderr
