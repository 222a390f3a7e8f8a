"""Every reward answers by its ``timeout``, on every pool: a sample that hangs is ``timeout``, the others of
its chunk are scored, the worker goes on serving and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from rewardq import RewardClient, Settings
from rewardq.results import ScoreResult
from rewardq.storage import make_engine
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import rewardq

TIMEOUT_S = 10
MARGIN_S = 5  # "it came back rather than hung", not a precision bound (bench/deadline.py measures that)

HANGS = """
import threading


def score(completions, **kwargs):
    for completion in completions:
        if "HANG" in completion:
            threading.Event().wait()  # forever
    return [1.0 for _ in completions]
"""

SAMPLES = [{"completion": c} for c in ("fine", "HANG here", "fine too", "HANG there")]


def rewards_file(tmp_path: Path) -> Path:
    """``hangs``: the function above, TRL convention, timeout 10 s; ``accuracy`` with math-verify's own
    1 s limit per step."""
    (tmp_path / "hangs_reward.py").write_text(HANGS)
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.hangs]\nkind = "function"\nfunction = "hangs_reward.py:score"\nconvention = "trl"\n'
        f"timeout = {TIMEOUT_S}\n"
        '[rewards.accuracy]\nkind = "accuracy"\ntimeout_seconds = 1\n'
    )
    return rewards


def audited(database_url: str, batch_id: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT status FROM scores WHERE batch_id = :b ORDER BY sample_index"), {"b": batch_id}
            ).all()
    finally:
        engine.dispose()
    return [row.status for row in rows]


def score_hanging_chunk(client: RewardClient, database_url: str) -> None:
    """The chunk with two hanging samples: those are ``timeout``, the rest ``ok``, in the result and the
    audit, back within the deadline; then the next chunk scores."""
    started = time.monotonic()
    result = client.score(SAMPLES, "hangs", run_id="deadline", timeout=120)
    elapsed = time.monotonic() - started
    assert result.statuses["hangs"] == ["ok", "timeout", "ok", "timeout"]
    assert result.rewards["hangs"][0] == 1.0 and result.rewards["hangs"][2] == 1.0
    assert f"within its timeout of {TIMEOUT_S}s" in result.errors["hangs"][1]
    assert elapsed < TIMEOUT_S + MARGIN_S
    assert audited(database_url, result.batch_id) == ["ok", "timeout", "ok", "timeout"]
    after = client.score([{"completion": "fine"}, {"completion": "fine"}], "hangs", run_id="deadline")
    assert after.statuses["hangs"] == ["ok", "ok"]


def endless_comparison(client: RewardClient) -> ScoreResult:
    """9^(9^(9^9)) is never evaluated: math-verify's own alarm must stop it, whatever the pool."""
    samples = [
        {"completion": "\\boxed{9^{9^{9^{9}}}}", "solution": "$3$"},
        {"completion": "\\boxed{3}", "solution": "$3$"},
    ]
    return client.score(samples, "accuracy", run_id="deadline", timeout=120)


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def spawned(pids: set[int]) -> set[int]:
    """Those of ``pids`` that are multiprocessing's spawned children (the rewards' processes)."""

    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    return {pid for pid in pids if b"spawn_main" in cmdline(pid)}


def alive(pids: set[int]) -> set[int]:
    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    return {pid for pid in pids if running(pid)}


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_a_hanging_sample_is_timeout_and_the_worker_goes_on(
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    pool: str,
) -> None:
    rewards = rewards_file(tmp_path)
    worker = start_worker(
        redis_server.url,
        sqlite_url,
        *("--rewards", "hangs,accuracy", "--pool", pool, "--concurrency", "1"),
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=rewards)
    with RewardClient(settings) as client:
        score_hanging_chunk(client, sqlite_url)
        checked = endless_comparison(client)
    assert checked.statuses["accuracy"] == ["timeout", "ok"]
    assert "took more than 1s" in checked.errors["accuracy"][0]
    children = descendants(worker.proc.pid)
    assert children  # the rewards' children (and the prefork pool's)
    worker.stop()
    deadline = time.monotonic() + 30
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children), f"left behind: {alive(children)}\n{worker.output()}"


@pytest.mark.slow
def test_a_hanging_sample_is_timeout_on_the_embedded_worker(tmp_path: Path, sqlite_url: str) -> None:
    rewards = rewards_file(tmp_path)
    settings = Settings.from_env({}, database_url=sqlite_url, rewards=rewards)
    with RewardClient(settings) as client:
        score_hanging_chunk(client, sqlite_url)
        checked = endless_comparison(client)
        children = spawned(descendants(os.getpid()))
    assert children
    assert checked.statuses["accuracy"] == ["timeout", "ok"]
    deadline = time.monotonic() + 30
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(children)


CRASHES = """
import os, signal


def score(completions, **kwargs):
    if any("crash" in c for c in completions):
        os.kill(os.getpid(), signal.SIGKILL)  # the reward's own process dies
    return [1.0 for _ in completions]
"""


@pytest.mark.slow
def test_a_sample_that_kills_its_process_fails_alone_and_the_worker_stays(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    (tmp_path / "crashes_reward.py").write_text(CRASHES)
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.crashes]\nkind = "function"\nfunction = "crashes_reward.py:score"\nconvention = "trl"\n'
    )
    env = {"REWARDQ_REWARDS": str(rewards)}
    worker = start_worker(redis_server.url, sqlite_url, "--rewards", "crashes", "--pool", "solo", env=env)
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=rewards)
    with RewardClient(settings) as client:
        result = client.score([{"completion": "fine"}, {"completion": "crash"}], "crashes", run_id="c")
        assert result.statuses["crashes"] == ["ok", "error"]
        assert result.errors["crashes"][1] == (
            "ChildDied: the reward's process died during the call (killed by signal 9)"
        )
        after = client.score([{"completion": "fine"}], "crashes", run_id="c")
    assert after.statuses["crashes"] == ["ok"]
    assert worker.proc.poll() is None


def test_a_reward_that_cannot_be_set_up_in_its_child_fails_the_worker_start(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str
) -> None:
    (tmp_path / "broken_reward.py").write_text("raise RuntimeError('no such model')\n")
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.broken]\nkind = "function"\nfunction = "broken_reward.py:score"\nconvention = "trl"\n'
    )
    env = {"REWARDQ_BROKER_URL": redis_server.url, "REWARDQ_DATABASE_URL": sqlite_url}
    proc = rewardq("worker", "--rewards", "broken", env={**env, "REWARDQ_REWARDS": str(rewards)}, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "reward 'broken': cannot load" in proc.stderr and "no such model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_trainer_script_without_a_main_guard_is_not_run_again_by_the_children(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The children are spawned without importing the parent's ``__main__``: a script that scores at top
    level (the embedded worker) runs once."""
    script = tmp_path / "train.py"
    script.write_text(
        "from rewardq import RewardClient, Settings\n"
        f"settings = Settings.from_env({{}}, database_url={sqlite_url!r})\n"
        "with RewardClient(settings) as client:\n"
        "    result = client.score([{'completion': '<answer>b</answer>'}], 'format', run_id='t')\n"
        "print('scored', result.statuses['format'], flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env["REWARDQ_HOME"] = str(tmp_path / "home")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["scored ['ok']"]


NAPS = """
import time


def score(completions, **kwargs):
    time.sleep(2)
    return [1.0 for _ in completions]
"""


@pytest.mark.slow
def test_a_threads_worker_has_a_child_for_each_task_it_runs_at_once(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Three 2 s chunks at once on a threads worker of concurrency 3, each with 3 s: none waits for a
    child (with two children, the third would start at 2 s and be ``timeout`` at 3 s)."""
    (tmp_path / "naps_reward.py").write_text(NAPS)
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.naps]\nkind = "function"\nfunction = "naps_reward.py:score"\nconvention = "trl"\n'
        "timeout = 3\n"
    )
    worker = start_worker(
        redis_server.url,
        sqlite_url,
        *("--rewards", "naps", "--pool", "threads", "--concurrency", "3"),
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    deadline = time.monotonic() + 30  # pebble starts its processes from its own thread
    while len(children := spawned(descendants(worker.proc.pid))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(children) == 3 + 1  # one spare, for a stopped child's samples
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, rewards=rewards, chunk_size=1
    )
    with RewardClient(settings) as client:
        result = client.score([{"completion": f"c{i}"} for i in range(3)], "naps", run_id="naps", timeout=60)
    assert result.statuses["naps"] == ["ok", "ok", "ok"], result.errors
