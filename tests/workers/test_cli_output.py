"""What ``rewardq`` writes to stdout when it is not a terminal: whole values on one line, and a quiet
stop when the reader goes away (``| head``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from rewardq.storage import make_engine, upgrade, write_scores
from rewardq.workers.cli.common import SIGPIPE_EXIT
from tests.workers.test_cli import REWARDQ, rewardq

LONG_ID = "dataset/" + "x" * 150 + "/end"


def _fill(url: str, n: int) -> list[dict[str, Any]]:
    upgrade(url)
    rows = [
        {
            "run_id": "out-1",
            "step": 0,
            "batch_id": "b1",
            "sample_index": i,
            "sample_hash": hashlib.sha256(str(i).encode()).hexdigest(),
            "sample_id": LONG_ID if i == 0 else f"s{i}",
            "reward": "accuracy",
            "scorer": "math@1:0123456789ab",
            "value": 1.0,
            "status": "ok",
            "latency_ms": 1.0,
            "attempts": 1,
            "worker_host": "node-1",
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
        for i in range(n)
    ]
    engine = make_engine(url)
    with engine.begin() as conn:
        write_scores(conn, rows)
    engine.dispose()
    return rows


def test_a_piped_table_keeps_hashes_and_ids_whole_on_one_line(sqlite_url: str) -> None:
    rows = _fill(sqlite_url, 3)
    env = {"REWARDQ_DATABASE_URL": sqlite_url, "COLUMNS": "80"}
    out = rewardq("audit", "scores", "out-1", env=env).stdout
    line = next(x for x in out.splitlines() if rows[0]["sample_hash"] in x)
    assert LONG_ID in line
    assert all(r["sample_hash"] in out for r in rows)


# A table is one write of the whole text, which this sandbox's pipes accept whole even from a closed
# reader; on Linux it fails as the others do, and rich's hook hands it to the same handler.
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_reader_that_stops_early_ends_the_command_quietly(sqlite_url: str, fmt: str) -> None:
    _fill(sqlite_url, 3000)  # far more than a pipe's buffer
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update({"REWARDQ_HOME": os.environ["REWARDQ_HOME"], "REWARDQ_DATABASE_URL": sqlite_url})
    proc = subprocess.Popen(
        [REWARDQ, "audit", "scores", "out-1", "-f", fmt],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # `| head -1`: one line read, then the pipe closed
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == SIGPIPE_EXIT
    assert stderr == ""
