"""The ``rewardq`` command line, run as a user runs it (subprocesses), on the embedded default and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RedisServer, WorkerProcess

REWARDQ = str(Path(sys.executable).with_name("rewardq"))


def rewardq(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    full_env.update({"REWARDQ_HOME": os.environ["REWARDQ_HOME"], "COLUMNS": "200", **(env or {})})
    proc = subprocess.run([REWARDQ, *args], env=full_env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"rewardq {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


ROLLOUTS = [
    {
        "prompt": "1+1?",
        "completion": "<think>easy</think><answer>\\boxed{2}</answer>",
        "solution": "$2$",
        "id": "a",
    },
    {
        "messages": [
            {"role": "user", "content": "half?"},
            {"role": "assistant", "content": "it is \\boxed{0.5}"},
        ],
        "solution": "$\\frac{1}{2}$",
        "id": "b",
    },
    {"prompt": "?", "completion": "<think>hm</think><answer>7</answer>", "id": "c"},
]


@pytest.mark.slow
def test_demo_runs_on_the_embedded_default_and_says_where_the_audit_is(tmp_path: Path) -> None:
    proc = rewardq("demo", "--run-id", "demo-test", "--out", str(tmp_path / "demo.jsonl"))
    audit = Path(os.environ["REWARDQ_HOME"]) / "audit.db"
    assert f"audit store: sqlite:///{audit}" in proc.stdout.replace("\n", "")
    assert "summary" in proc.stdout and "accuracy" in proc.stdout
    lines = [json.loads(x) for x in (tmp_path / "demo.jsonl").read_text().splitlines()]
    assert len(lines) >= 36
    statuses = {s for line in lines for s in line["reward_status"].values()}
    assert {"ok", "unscorable"} <= statuses
    assert any(line["rewards"]["accuracy"] == 1.0 for line in lines)
    assert any(line["rewards"]["accuracy"] == 0.0 for line in lines)
    stats = rewardq("audit", "stats", "demo-test", "--format", "jsonl").stdout.splitlines()
    assert {json.loads(s)["reward"] for s in stats} == {"accuracy", "format", "repetition"}


@pytest.mark.slow
def test_score_embedded_writes_records_with_rewards_and_the_audit_answers(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROLLOUTS)
    out = tmp_path / "out.jsonl"
    rewardq(
        "score",
        str(source),
        "--reward",
        "accuracy",
        "--reward",
        "format=0.5",
        "--out",
        str(out),
        "--run-id",
        "R1",
        "--step",
        "7",
        "--no-progress",
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "c"]
    assert lines[0]["rewards"] == {"accuracy": 1.0, "format": 1.0}
    assert lines[0]["reward"] == 1.5
    assert lines[1]["rewards"] == {"accuracy": 1.0, "format": 0.0}
    assert lines[2]["reward_status"] == {"accuracy": "unscorable", "format": "ok"}
    assert lines[2]["rewards"]["accuracy"] is None and lines[2]["reward"] == 0.5
    assert "reward_errors" in lines[2] and "accuracy" in lines[2]["reward_errors"]
    assert lines[0]["prompt"] == "1+1?", "input fields are kept"

    runs = [json.loads(x) for x in rewardq("audit", "runs", "--format", "jsonl").stdout.splitlines()]
    assert [r["run_id"] for r in runs] == ["R1"]
    scores = rewardq("audit", "scores", "R1", "--reward", "accuracy", "--format", "csv").stdout.splitlines()
    assert len(scores) == 1 + 3 and "sample_hash" in scores[0]
    history = rewardq("audit", "sample", "--id", "a", "--format", "jsonl").stdout.splitlines()
    assert {json.loads(h)["reward"] for h in history} == {"accuracy", "format"}


def test_score_rejects_bad_input_with_line_numbers_before_enqueueing(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"completion": "fine"}\n\n{"completion": 3}\n{"prompt": "p"}\n')
    proc = rewardq(
        "score", str(source), "-r", "format", "-o", str(tmp_path / "o.jsonl"), "--run-id", "x", check=False
    )
    assert proc.returncode == 2
    assert "2 invalid input problems; nothing was enqueued" in proc.stderr
    assert "line 3, field 'completion'" in proc.stderr
    assert "line 4, field 'completion': missing" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
    not_json = tmp_path / "not.jsonl"
    not_json.write_text('{"completion": 3}\nnot json\n')
    proc = rewardq("score", str(not_json), "-r", "format", "-o", "o", "--run-id", "x", check=False)
    assert proc.returncode == 2 and "2 invalid input problems" in proc.stderr
    assert proc.stderr.index("line 1, field 'completion'") < proc.stderr.index("line 2: invalid JSON")
    proc = rewardq(
        "score", str(source), "-r", "nope", "-o", str(tmp_path / "o.jsonl"), "--run-id", "x", check=False
    )
    assert proc.returncode == 2 and "unknown reward 'nope'" in proc.stderr
    proc = rewardq("score", str(source), "-r", "format=lots", "-o", "o", "--run-id", "x", check=False)
    assert proc.returncode == 2 and "weight 'lots' is not a number" in proc.stderr


def test_rewards_lists_kinds_and_configured_rewards(tmp_path: Path) -> None:
    config = tmp_path / "r.toml"
    config.write_text('[rewards.strict_fmt]\nkind = "format"\n')
    out = rewardq("rewards", "--config", str(config)).stdout
    assert "strict_fmt" in out and "rewards.strict_fmt" in out and "text_similarity" in out


def test_db_upgrade_on_sqlite_and_postgres(sqlite_url: str, postgres_url: str) -> None:
    for url in (sqlite_url, postgres_url):
        rewardq("db", "upgrade", env={"REWARDQ_DATABASE_URL": url})
        assert rewardq("db", "current", env={"REWARDQ_DATABASE_URL": url}).stdout.strip() not in {"", "none"}


def test_worker_without_a_broker_or_with_an_unknown_reward_fails_clearly(redis_server: RedisServer) -> None:
    proc = rewardq("worker", "--rewards", "format", check=False)
    assert proc.returncode == 2 and "needs a broker" in proc.stderr
    proc = rewardq("worker", "--rewards", "nope", env={"REWARDQ_BROKER_URL": redis_server.url}, check=False)
    assert proc.returncode == 2 and "unknown reward 'nope'" in proc.stderr


@pytest.mark.slow
def test_score_through_redis_workers_from_parquet(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    start_worker(redis_server.url, postgres_url, "--rewards", "format,accuracy", "--concurrency", "2")
    rows = [ROLLOUTS[0], ROLLOUTS[2]] * 50
    source = tmp_path / "in.parquet"
    pq.write_table(pyarrow.Table.from_pylist(rows), source)
    out = tmp_path / "out.jsonl"
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": postgres_url,
        "REWARDQ_CHUNK_SIZE": "16",
    }
    rewardq(
        "score",
        str(source),
        "-r",
        "format",
        "-r",
        "accuracy",
        "-o",
        str(out),
        "--run-id",
        "pq",
        "--no-progress",
        env=env,
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 100
    assert [line["reward_status"]["accuracy"] for line in lines[:2]] == ["ok", "unscorable"]
    stats = [
        json.loads(s) for s in rewardq("audit", "stats", "pq", "-f", "jsonl", env=env).stdout.splitlines()
    ]
    assert {s["reward"] for s in stats} == {"format", "accuracy"}
