"""Prometheus metrics scraped from a live worker (prefork at concurrency 2, and solo) and from the
``rewardq status`` exporter during real batches, with real Redis and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rewardq import RewardClient, Settings
from rewardq.wire.schema import queue_for
from tests.conftest import RedisServer, WorkerProcess, free_port
from tests.fake_openai import FakeOpenAI, failing, verdict
from tests.workers.test_dlq import UNKNOWN_VERSION, _publish, dlq_entries

pytestmark = pytest.mark.slow

REWARDQ = str(Path(sys.executable).with_name("rewardq"))

# ok for "good", no value (unscorable) for "none", an error for "boom"
PICKY = """
def score(completions, **kwargs):
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    if any("boom" in t for t in texts):
        raise ValueError("boom")
    return [1.0 if "good" in t else None for t in texts]
"""

Samples = dict[tuple[str, ...], float]


def scrape(port: int) -> dict[str, Samples]:
    """Each metric's samples (name with suffix → {label values: value}) from ``/metrics`` on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out: dict[str, Samples] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value  # type: ignore[index]
    return out


def by_label(samples: Samples, label: str, **where: str) -> dict[str, float]:
    """``samples`` keyed by ``label``'s value, for those whose other labels are ``where``."""
    out: dict[str, float] = {}
    for key, value in samples.items():
        labels = dict(key)
        if all(labels.get(k) == v for k, v in where.items()):
            out[labels[label]] = out.get(labels[label], 0.0) + value
    return out


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}")
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing served on port {port} within {timeout}s")


@pytest.fixture
def rewards_file(tmp_path: Path) -> Path:
    (tmp_path / "picky_reward.py").write_text(PICKY)
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.picky]\nkind = "function"\nfunction = "picky_reward.py:score"\nconvention = "trl"\n'
    )
    return rewards


@pytest.mark.postgres
@pytest.mark.parametrize(
    "pool", [["--pool", "prefork", "--concurrency", "2"], ["--pool", "solo"]], ids=["prefork", "solo"]
)
def test_counters_move_by_exactly_the_batch_per_status(
    pool: list[str],
    tmp_path: Path,
    redis_server: RedisServer,
    postgres_url: str,
    rewards_file: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    port = free_port()
    env = {"REWARDQ_REWARDS": str(rewards_file), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    (tmp_path / "prom" / "counter_999999.db").write_bytes(b"stale")  # an earlier run's: removed at start
    rewards = ["format", "accuracy", "picky"]
    start_worker(
        redis_server.url,
        postgres_url,
        "--rewards",
        ",".join(rewards),
        *pool,
        "--metrics-port",
        str(port),
        env=env,
    )
    before = scrape(port).get("rewardq_samples_scored_total", {})
    assert not before  # nothing scored yet
    samples = [
        {"prompt": "p", "completion": "<think>a</think><answer>4</answer> good", "solution": "$4$"},
        {"prompt": "p", "completion": "none", "solution": "$5$"},
        {"prompt": "p", "completion": "boom"},  # no solution: accuracy cannot score it
    ] * 5
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, rewards=rewards_file, timeout=120, chunk_size=4
    )
    with RewardClient(settings) as client:
        result = client.score(samples, rewards, run_id="metrics")
    after = scrape(port)
    scored = after["rewardq_samples_scored_total"]
    for reward in rewards:
        expected = Counter(result.statuses[reward])
        assert by_label(scored, "status", reward=reward) == {s: float(n) for s, n in expected.items()}, reward
    assert {s for r in rewards for s in result.statuses[r]} >= {"ok", "error", "unscorable"}
    # every chunk timed (4 chunks of each reward), every task's queue wait taken from its header
    chunks = by_label(after["rewardq_chunk_seconds_count"], "reward")
    assert chunks == dict.fromkeys(rewards, 4.0)
    assert by_label(after["rewardq_queue_wait_seconds_count"], "reward") == dict.fromkeys(rewards, 4.0)
    assert sum(after["rewardq_audit_write_seconds_count"].values()) == 12
    assert not (tmp_path / "prom" / "counter_999999.db").exists()


@pytest.mark.postgres
def test_a_judges_counters_move_by_the_requests_its_server_saw(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    # every chat request fails once (503) before its verdict: one retry each
    with FakeOpenAI(failing(1, 503, verdict("[[7]]"), {"retry-after-ms": "10"})) as server:
        rewards = tmp_path / "rewards.toml"
        rewards.write_text(
            f'[rewards.grader]\nkind = "judge"\nbase_url = "{server.base_url}"\nmodel = "{server.model}"\n'
            'template = "Grade: {completion}"\nscore_range = [0, 10]\n'
        )
        port = free_port()
        worker_args = ["--rewards", "grader", "--pool", "solo", "--metrics-port", str(port)]
        start_worker(redis_server.url, postgres_url, *worker_args, env={"REWARDQ_REWARDS": str(rewards)})
        # the start's probes (GET /models) are requests too
        assert sum(scrape(port).get("rewardq_judge_requests_total", {}).values()) == len(server.requests)
        samples = [{"prompt": "p", "completion": f"c{i}"} for i in range(6)]
        settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=120)
        with RewardClient(settings) as client:
            first = client.score(samples, "grader", run_id="j")
            seen = len(server.requests)
            second = client.score(samples, "grader", run_id="j")  # answered from the cache
        assert first.statuses["grader"] == second.statuses["grader"] == ["ok"] * 6, first.errors
        assert len(server.requests) == seen and len(server.chat_requests) == 12  # 6 requests, 2 attempts each
        after = scrape(port)
        assert sum(after["rewardq_judge_requests_total"].values()) == len(server.requests)
        assert sum(after["rewardq_judge_retries_total"].values()) == 6
        assert by_label(after["rewardq_cache_hits_total"], "reward") == {"grader": 6.0}
        # the fake's usage: 11 prompt and 3 completion tokens per reply, counted once per sample judged
        assert by_label(after["rewardq_tokens_total"], "direction", reward="grader") == {
            "in": 66.0,
            "out": 18.0,
        }
        assert by_label(after["rewardq_samples_scored_total"], "status", reward="grader") == {"ok": 12.0}


def test_sandbox_cases_are_counted_by_outcome_past_the_verdicts_the_audit_keeps(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    rewards = tmp_path / "rewards.toml"
    rewards.write_text('[rewards.code]\nkind = "code"\ntime_limit = 10\nparallel = 4\n')
    port = free_port()
    start_worker(
        redis_server.url,
        sqlite_url,
        *("--rewards", "code", "--pool", "threads", "--metrics-port", str(port)),
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    add = "a, b = map(int, input().split())\nprint(a + b)"
    # 66 cases: the audit keeps the first 64 verdicts; of the two past them, one passes and one does not
    inputs = [f"{i} 1\n" for i in range(66)]
    outputs = [f"{i + 1}\n" for i in range(65)] + ["0\n"]
    samples = [
        {"completion": add, "tests": {"inputs": inputs, "outputs": outputs}},
        {"completion": "print(0)", "tests": {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}},
        {"completion": add},  # no tests: unscorable, no case run
    ]
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=300)
    with RewardClient(settings) as client:
        result = client.score(samples, "code", run_id="cases")
    assert result.statuses["code"] == ["ok", "ok", "unscorable"], result.errors
    cases = by_label(scrape(port)["rewardq_sandbox_cases_total"], "outcome", reward="code")
    assert cases == {"passed": 65.0, "not_passed": 1.0, "wrong_answer": 2.0}


SLEEPY = """
import time

def score(completions, **kwargs):
    time.sleep(60)
    return [1.0 for _ in completions]
"""


def test_deadline_kills_and_dlq_parks_are_counted(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    (tmp_path / "sleepy_reward.py").write_text(SLEEPY)
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.sleepy]\nkind = "function"\nfunction = "sleepy_reward.py:score"\nconvention = "trl"\n'
        "timeout = 1\n"
    )
    port = free_port()
    start_worker(
        redis_server.url,
        sqlite_url,
        *("--rewards", "sleepy,format", "--pool", "solo", "--metrics-port", str(port)),
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    body = ((UNKNOWN_VERSION,), {}, {})
    _publish(redis_server.url, body, queue=queue_for("format"), serializer="json")
    _publish(redis_server.url, body, queue=queue_for("format"), serializer="pickle")
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=120)
    with RewardClient(settings) as client:
        result = client.score([{"completion": "a"}], ["sleepy", "format"], run_id="late")  # after them
    assert result.statuses["sleepy"] == ["timeout"]
    after = scrape(port)
    assert by_label(after["rewardq_deadline_hits_total"], "action", reward="sleepy") == {"killed": 1.0}
    assert sum(after["rewardq_dlq_parked_total"].values()) == len(dlq_entries(redis_server.url)) == 2


# blocks while a "block" file lies beside it, after leaving a "started" one
BLOCKING = """
import time
from pathlib import Path

HERE = Path(__file__).parent

def score(completions, **kwargs):
    (HERE / "started").touch()
    while (HERE / "block").exists():
        time.sleep(0.05)
    return [1.0 for _ in completions]
"""


@pytest.mark.postgres
def test_a_killed_pool_process_leaves_no_task_counted_running(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    (tmp_path / "slow_reward.py").write_text(BLOCKING)
    (tmp_path / "block").touch()
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.slow]\nkind = "function"\nfunction = "slow_reward.py:score"\nconvention = "trl"\n'
    )
    port = free_port()
    worker = start_worker(
        redis_server.url,
        postgres_url,
        *("--rewards", "slow", "--pool", "prefork", "--concurrency", "2", "--metrics-port", str(port)),
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=120)
    with RewardClient(settings) as client:
        handle = client.submit([{"completion": "c"}], "slow", run_id="killed")
        wait_for(lambda: (tmp_path / "started").exists(), "the reward's call")
        assert scrape(port)["rewardq_tasks_running"] == {(): 1.0}
        pool = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text().split()
        for pid in pool:  # the pool's processes, killed mid-task: none marks its gauge dead
            os.kill(int(pid), signal.SIGKILL)
        (tmp_path / "block").unlink()
        result = handle.get(timeout=120)  # the task, given back, scored by a replacement process
    assert result.statuses["slow"] == ["ok"]
    after = scrape(port)
    assert after["rewardq_tasks_running"] == {(): 0.0}
    assert by_label(after["rewardq_samples_scored_total"], "status", reward="slow") == {"ok": 1.0}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def _exporter(
    broker_url: str, port: int, *args: str, database_url: str | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update({"REWARDQ_HOME": os.environ["REWARDQ_HOME"], "REWARDQ_BROKER_URL": broker_url})
    if database_url is not None:
        env["REWARDQ_DATABASE_URL"] = database_url
    return subprocess.Popen(
        [REWARDQ, "status", "--metrics-port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def exporter(redis_server: RedisServer) -> Iterator[int]:
    port = free_port()
    proc = _exporter(redis_server.url, port)
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_exporter_reports_queue_depths_and_live_workers(
    exporter: int, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url, serve_wait=0)
    with RewardClient(settings) as client:
        for _ in range(3):
            client.submit([{"completion": "c"}], "accuracy", run_id="waiting")
        client.submit([{"completion": "c"}], "accuracy", run_id="waiting", priority=9)
    first = scrape(exporter)
    assert first["rewardq_broker_up"] == {(): 1.0}
    assert by_label(first["rewardq_queue_depth"], "priority", reward="accuracy") == {"0": 3.0, "9": 1.0}
    assert first["rewardq_workers_live"] == {(): 0.0}
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    second = scrape(exporter)
    assert second["rewardq_workers_live"] == {(): 1.0}
    assert by_label(second["rewardq_reward_workers"], "reward") == {"format": 1.0}
    assert by_label(second["rewardq_queue_depth"], "priority", reward="accuracy") == {"0": 3.0, "9": 1.0}
    redis_server.stop()
    assert scrape(exporter) == {"rewardq_broker_up": {(): 0.0}}  # the broker away: that alone


def test_the_exporter_serves_a_runs_health_at_its_last_step(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    settings = Settings.from_env({}, broker_url=redis_server.url, serve_wait=10)
    rows = [{"completion": "<think>a</think><answer>b</answer>"}, {"completion": "plain"}] * 3
    with RewardClient(settings) as client:
        for step in (0, 1):
            client.score(rows, "format", run_id="watched", step=step, timeout=60)
    port = free_port()
    proc = _exporter(redis_server.url, port, "--health-run", "watched", database_url=sqlite_url)
    try:
        wait_port(port, proc)
        metrics = scrape(port)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert metrics["rewardq_health_step"] == {(("run", "watched"),): 1.0}
    scores = metrics["rewardq_health_scores"]
    assert by_label(scores, "status", run="watched", reward="format") == {
        "ok": 6.0,
        "unscorable": 0.0,
        "error": 0.0,
        "timeout": 0.0,
    }
    assert metrics["rewardq_health_value_mean"] == {(("reward", "format"), ("run", "watched")): 0.5}


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def _tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for child in children for p in _tree(int(child)))]


def _listening(pid: int) -> set[str]:
    """The sockets that ``pid`` or a process under it listens on (their inodes)."""
    sockets = set()
    for process in _tree(pid):
        for fd in Path(f"/proc/{process}/fd").iterdir():
            target = os.readlink(fd) if fd.exists() else ""
            if target.startswith("socket:["):
                sockets.add(target[len("socket:[") : -1])
    return sockets & _listening_inodes()


def test_metrics_are_off_by_default_and_their_files_go_with_the_worker(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    prefork = ["--rewards", "format", "--pool", "prefork", "--concurrency", "2"]
    (tmp_path / "tmp").mkdir()
    off = start_worker(redis_server.url, sqlite_url, *prefork)
    on = start_worker(
        redis_server.url,
        sqlite_url,
        *prefork,
        "--metrics-port",
        str(free_port()),
        env={"TMPDIR": str(tmp_path / "tmp")},
    )
    assert not _listening(off.proc.pid)
    assert _listening(on.proc.pid)  # what the check sees when the port is open
    [files] = (tmp_path / "tmp").glob("rewardq-metrics-*")  # PROMETHEUS_MULTIPROC_DIR, made by the worker
    on.stop()
    assert not files.exists()
