"""``rewardq status`` against a password-protected redis-server of the test's own and a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rewardq import RewardClient, Settings
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

REWARDQ = str(Path(sys.executable).with_name("rewardq"))
SECRET = "st4tus-s3cret"


def status(*args: str, broker_url: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update(
        {"REWARDQ_HOME": os.environ["REWARDQ_HOME"], "REWARDQ_BROKER_URL": broker_url, "COLUMNS": "200"}
    )
    proc = subprocess.run([REWARDQ, "status", *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    return proc.stdout


def test_status_shows_live_workers_queue_depths_and_masks_the_password(
    tmp_path: Path, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    server = RedisServer(tmp_path / "redis", password=SECRET)
    server.start()
    try:
        worker = start_worker(server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
        # two tasks of a reward no worker serves wait on its queue
        settings = Settings.from_env({}, broker_url=server.url, serve_wait=0)
        with RewardClient(settings) as client:
            for _ in range(2):
                client.submit([{"completion": "c"}], "accuracy", run_id="waiting")

        report = json.loads(status("--json", broker_url=server.url))
        assert report["broker"] == f"redis://:**@127.0.0.1:{server.port}/0"
        [live] = report["workers"]
        assert live["node"].startswith(f"rewardq-cpu-{worker.proc.pid}@")
        assert (live["rewards"], live["pool"], live["concurrency"], live["held"]) == (
            ["format"],
            "solo",
            1,
            0,
        )
        assert live["last_beat_s"] >= 0
        depths = {q["reward"]: q["depth"] for q in report["queues"]}
        assert depths == {"accuracy": 2, "format": 0}
        assert (report["in_flight"], report["parked"]) == (0, 0)

        table = status(broker_url=server.url)
        assert "redis://:**@127.0.0.1" in table and live["node"] in table.replace("\n", "")
        assert "rewards.accuracy" in table and "tasks in flight: 0" in table
    finally:
        server.stop()
