"""What ``rewardq score`` says while it waits and when it stops: a broker lost for good, an interrupt,
a lost worker, and the serving check's wait — each one line on stderr, run as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import REWARDQ, write_jsonl

pytestmark = pytest.mark.slow

# A reward slow enough (50 ms a sample) that a run is still going when the test acts on it.
SLOW = """
import time


def slow(completions, **kwargs):
    time.sleep(0.05 * len(completions))
    return [1.0 for _ in completions]
"""


def _rewards(tmp_path: Path) -> Path:
    (tmp_path / "slow_reward.py").write_text(SLOW)
    path = tmp_path / "rewards.toml"
    path.write_text('[rewards.slow]\nkind = "function"\nfunction = "slow_reward:slow"\nconvention = "trl"\n')
    return path


def _env(env: dict[str, str]) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    return full_env | {"REWARDQ_HOME": os.environ["REWARDQ_HOME"], "COLUMNS": "200", **env}


def _start_score(tmp_path: Path, env: dict[str, str], n: int = 400) -> tuple[subprocess.Popen[str], Path]:
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "completion": f"c{i}"} for i in range(n)])
    out = tmp_path / "out.jsonl"
    args = ["score", str(source), "-r", "slow", "-o", str(out), "--run-id", "r1", "--no-progress"]
    proc = subprocess.Popen(
        [REWARDQ, *args], env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, out


def _wait_for_scores(out: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until the first chunk is written to OUT.partial (the run is under way)."""
    partial = out.with_name(out.name + ".partial")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"no chunk came back (exit {proc.poll()})")


def test_a_broker_gone_for_good_mid_run_is_one_line_with_the_resume_hint(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    rewards = _rewards(tmp_path)
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": sqlite_url,
        "REWARDQ_REWARDS": str(rewards),
        "REWARDQ_CHUNK_SIZE": "8",
        "PYTHONPATH": str(tmp_path),
    }
    start_worker(redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "solo", env=env)
    proc, out = _start_score(tmp_path, env)
    _wait_for_scores(out, proc)
    redis_server.stop()
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "Retry (" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "rerun the same command (same --run-id) to resume" in errors[0]
    assert stderr.strip().splitlines()[-1] == errors[0]
    waits = [line for line in stderr.splitlines() if "waiting for the broker" in line]
    assert len(waits) <= 1, stderr


def test_ctrl_c_exits_130_with_how_far_it_got_and_the_resume_hint(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": sqlite_url,
        "REWARDQ_REWARDS": str(_rewards(tmp_path)),
        "REWARDQ_CHUNK_SIZE": "8",
        "PYTHONPATH": str(tmp_path),
    }
    start_worker(redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "solo", env=env)
    proc, out = _start_score(tmp_path, env)
    _wait_for_scores(out, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and " of 400 scored, kept in " in last, stderr
    assert last.endswith("out.jsonl.partial; rerun the same command (same --run-id) to resume")
    assert out.with_name("out.jsonl.partial").exists() and not out.exists()


def test_the_wait_for_a_serving_worker_is_said_once(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str
) -> None:
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": sqlite_url,
        "REWARDQ_SERVE_WAIT": "2",
    }
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "completion": "c"}])
    args = ["score", str(source), "-r", "format", "-o", str(tmp_path / "o.jsonl"), "--run-id", "r"]
    proc = subprocess.run([REWARDQ, *args], env=_env(env), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    [waiting] = [line for line in lines if "waiting" in line]
    # the time left of REWARDQ_SERVE_WAIT, rounded up: the command's set-up used part of it
    assert re.search(r"waiting up to [12]s for a worker serving: format$", waiting), waiting
    assert lines[-1].startswith("error: no live worker serves reward 'format'")


def test_a_run_stalled_on_a_lost_worker_says_what_it_waits_for_once(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": sqlite_url,
        "REWARDQ_REWARDS": str(_rewards(tmp_path)),
        "REWARDQ_CHUNK_SIZE": "8",
        "REWARDQ_HEARTBEAT": "1",
        "REWARDQ_VISIBILITY_TIMEOUT": "8",
        "PYTHONPATH": str(tmp_path),
    }
    doomed = start_worker(redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "solo", env=env)
    start_worker(redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "solo", env=env)
    proc, out = _start_score(tmp_path, env)
    _wait_for_scores(out, proc)
    doomed.kill()  # its tasks wait in `unacked` until the other worker gives them back
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    said = [line for line in stderr.splitlines() if "no result for" in line]
    assert len(said) == 1, stderr
    assert "waiting for the broker to redeliver " in said[0] and " of a lost worker " in said[0]
    assert said[0].endswith("(within VISIBILITY_TIMEOUT + HEARTBEAT, 9s)")


def test_the_serving_wait_counts_from_the_process_start_imports_included() -> None:
    """REWARDQ_SERVE_WAIT is promised from the command's start: the clock it counts from is the process's
    start, so the interpreter's start and the imports before the command runs are inside the wait."""
    code = (
        "import time; time.sleep(0.5)\n"
        "from rewardq.workers.cli.common import process_started\n"
        "print(time.monotonic() - process_started())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(proc.stdout) >= 0.5
