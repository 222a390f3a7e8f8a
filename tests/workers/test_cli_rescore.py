"""``rewardq score`` (formats, field maps, resume, broker failure, priority) and ``rewardq audit diff``,
run as a user runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import rewardq, write_jsonl

GOOD = "<think>a</think><answer>{}</answer>"


def verl_dump(path: Path, n: int) -> Path:
    return write_jsonl(
        path,
        [
            {
                "input": f"q{i}",
                "output": GOOD.format(i) if i % 4 else f"bare {i}",
                "gts": str(i),
                "score": 0.0,
            }
            for i in range(n)
        ],
    )


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_field_maps_and_an_unknown_format_name(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "plain.jsonl", [{"q": "?", "answer": GOOD.format(1)}, {"q": "?", "answer": "x"}]
    )
    out = tmp_path / "out.jsonl"
    args = ["score", str(source), "-r", "format", "-o", str(out), "--run-id", "m", "--no-progress"]
    proc = rewardq(*args, check=False)
    assert proc.returncode == 2 and "line 1, field 'completion': missing" in proc.stderr
    rewardq(*args, "--field", "completion=answer")
    assert [line["rewards"]["format"] for line in read_out(out)] == [1.0, 0.0]
    proc = rewardq(*args, "--field", "completion", check=False)
    assert proc.returncode == 2 and "TARGET=SOURCE" in proc.stderr
    proc = rewardq(*args, "--rollout-format", "nemo", check=False)
    assert proc.returncode == 2 and "verl" in proc.stderr


def test_audit_diff_of_two_scorer_versions_with_a_plot(tmp_path: Path) -> None:
    source = verl_dump(tmp_path / "5.jsonl", 40)
    strict = tmp_path / "strict.toml"  # a stricter format: only completions of an even number pass
    strict.write_text(
        "[rewards.format]\nkind = \"format\"\npattern = '^<think>a</think><answer>\\d*[02468]</answer>$'\n"
    )
    base = ["score", str(source), "-r", "format", "--no-progress"]
    rewardq(*base, "-o", str(tmp_path / "a.jsonl"), "--run-id", "v1")
    rewardq(*base, "-o", str(tmp_path / "b.jsonl"), "--run-id", "v2", "--config", str(strict))
    plot = tmp_path / "diff.png"
    proc = rewardq("audit", "diff", "v1", "v2", "--plot", str(plot))
    assert "flip rate" in proc.stdout and "largest disagreements" in proc.stdout
    written = tmp_path / "diff-format.png"  # one PNG per reward
    assert f"plot written to {written}" in proc.stderr
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [row] = [json.loads(x) for x in rewardq("audit", "diff", "v1", "v2", "-f", "jsonl").stdout.splitlines()]
    odd_passing = sum(1 for i in range(40) if i % 4 and i % 2)  # 1.0 under v1, 0.0 under v2
    assert row["paired"] == 40 and row["flips"] == odd_passing
    assert row["flip rate"] == pytest.approx(odd_passing / 40)
    assert all(d["delta"] == -1.0 for d in row["largest"])
    proc = rewardq("audit", "diff", "v1", "v1", check=False)
    assert proc.returncode == 2 and "--scorer-a" in proc.stderr
    proc = rewardq("audit", "diff", "v1", "nope", check=False)
    assert proc.returncode == 1 and "no sample" in proc.stderr


@pytest.mark.slow
def test_a_full_redis_is_one_line_and_the_rerun_resumes_to_a_complete_file(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    import redis

    broker = redis.Redis.from_url(redis_server.url)
    source = verl_dump(tmp_path / "9.jsonl", 2000)
    out = tmp_path / "out.jsonl"
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": sqlite_url,
        "REWARDQ_CHUNK_SIZE": "16",
        "REWARDQ_SERVE_WAIT": "0",  # the first run has no worker
    }
    args = ["score", str(source), "-r", "format", "-o", str(out), "--run-id", "big", "--no-progress"]
    # No worker yet and a window wider than the file: tasks pile up until Redis refuses them.
    broker.config_set("maxmemory", int(broker.info("memory")["used_memory"]) + 150_000)
    proc = rewardq(*args, "--window", "1000", env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("error: the broker failed after 0 of 2,000 samples") and "--run-id" in line
    assert not out.exists() and out.with_name("out.jsonl.partial").exists()

    broker.config_set("maxmemory", 0)
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    queue = "rewards.format\x06\x169"
    while broker.llen(queue):  # the tasks sent before the failure are scored and audited
        broker.blpop("never-written", timeout=0.1)
    proc = rewardq(*args, env=env)
    lines = read_out(out)
    assert [x["input"] for x in lines] == [f"q{i}" for i in range(2000)]
    assert [x["rewards"]["format"] for x in lines] == [1.0 if i % 4 else 0.0 for i in range(2000)]
    [stats] = [
        json.loads(x) for x in rewardq("audit", "stats", "big", "-f", "jsonl", env=env).stdout.splitlines()
    ]
    assert stats["count"] == 2000  # every sample scored exactly once across the two runs
    assert "from audit" in proc.stderr


@pytest.mark.slow
def test_waiting_training_tasks_are_taken_before_waiting_rescoring_tasks(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    from sqlalchemy import func, select

    from rewardq.client import RewardClient
    from rewardq.storage import make_engine, scores_table
    from rewardq.wire.keys import RESCORE_PRIORITY
    from rewardq.wire.settings import Settings

    rows = [{"prompt": "p", "completion": GOOD.format(i)} for i in range(8)]
    settings = Settings.from_env(  # serve_wait=0: the tasks wait on the queue before the worker starts
        {}, broker_url=redis_server.url, database_url=sqlite_url, serve_wait=0
    )
    with RewardClient(settings) as client:
        rescoring = [
            client.submit(rows, ["format"], run_id="offline", priority=RESCORE_PRIORITY) for _ in range(20)
        ]
        training = [client.submit(rows, ["format"], run_id="train") for _ in range(3)]  # sent last
        start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
        for handle in training + rescoring:
            assert handle.get(timeout=60).status_counts() == {"format": {"ok": 8}}
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        c = scores_table.c
        order = [
            run
            for run, _ in conn.execute(
                select(c.run_id, func.min(c.id)).group_by(c.batch_id).order_by(func.min(c.id))
            )
        ]
    engine.dispose()
    assert order[:3] == ["train"] * 3 and order.count("offline") == 20
