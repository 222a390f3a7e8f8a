"""Training round trips while 100,000 samples are rescored: does offline rescoring starve training traffic?

A private redis-server, 2 worker processes (`format`, prefork, concurrency 1 each), audit in PostgreSQL.
A trainer-like client sends 64-sample batches one after another (`RewardClient.score`) and records each
round trip: alone, while a rescoring process streams a 100,000-sample verl dump at rescoring priority
(what `rewardq score` does), alone again, and — as the control — while the same rescoring runs at the
training priority. The rescoring runs in a process of its own (`score_file`, as the CLI calls it).

    .venv/bin/python bench/priority.py --samples 100000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from _services import postgres_database, redis_server, workers
from rescore import make_verl_dump

from rewardq.client import RewardClient
from rewardq.wire.keys import RESCORE_PRIORITY
from rewardq.wire.settings import Settings

ROWS = [
    {"prompt": f"what is 7*{i}?", "completion": f"<think>7 times {i}</think><answer>{7 * i}</answer>"}
    for i in range(64)
]


def round_trips(
    client: RewardClient, *, count: int | None = None, while_running: subprocess.Popen[bytes] | None = None
) -> list[float]:
    """Sequential 64-sample round trips in ms: ``count`` of them, or as long as ``while_running`` runs."""
    times: list[float] = []
    while (count is not None and len(times) < count) or (
        while_running is not None and while_running.poll() is None
    ):
        started = time.perf_counter()
        result = client.score(ROWS, ["format"], run_id="training", timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        assert result.status_counts() == {"format": {"ok": 64}}
    return times


def start_rescoring(source: Path, priority: int | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    code = (
        "import sys; from pathlib import Path; from rewardq.client import RewardClient;"
        "from rewardq.rescore import score_file;"
        "p = None if sys.argv[2] == 'none' else int(sys.argv[2]);"
        "c = RewardClient();"
        "score_file(c, Path(sys.argv[1]), None, {'format': 1.0}, run_id='rescore',"
        " progress=False, priority=p);"
        "c.close()"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(source), str(priority).lower()], env=env)


def wait_until_busy(proc: subprocess.Popen[bytes], broker: str) -> None:
    """Until the rescoring process has read its file and enqueued its first window."""
    queue = redis.Redis.from_url(broker)
    while proc.poll() is None and not any(queue.llen(k) for k in queue.scan_iter("rewards.format*")):
        time.sleep(0.02)


def summary(name: str, times: list[float], alone: float) -> str:
    q = statistics.quantiles(times, n=100)
    p50 = statistics.median(times)
    return f"{name:<40}{len(times):>6}{p50:>10.2f}{q[98]:>10.2f}{p50 / alone:>16.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--alone", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as d, redis_server() as broker, postgres_database() as database:
        source = Path(d) / "1.jsonl"
        make_verl_dump(source, args.samples)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
        env.update(
            {
                "REWARDQ_BROKER_URL": broker,
                "REWARDQ_DATABASE_URL": database,
                "REWARDQ_CHUNK_SIZE": str(args.chunk_size),
            }
        )
        settings = Settings.from_env({}, broker_url=broker, database_url=database)
        worker_args = ("--rewards", "format", "--concurrency", "1", "--loglevel", "WARNING")
        with workers(args.workers, broker, database, *worker_args), RewardClient(settings) as client:
            round_trips(client, count=20)  # warm up
            results: dict[str, list[float]] = {}
            results["alone (before)"] = round_trips(client, count=args.alone)
            proc = start_rescoring(source, RESCORE_PRIORITY, env)
            wait_until_busy(proc, broker)
            results["during rescoring, rescoring priority"] = round_trips(client, while_running=proc)
            assert proc.wait() == 0
            results["alone (after)"] = round_trips(client, count=args.alone)
            proc = start_rescoring(source, None, env)
            wait_until_busy(proc, broker)
            results["control: rescoring at training priority"] = round_trips(client, while_running=proc)
            assert proc.wait() == 0

    alone = statistics.median(results["alone (before)"] + results["alone (after)"])
    print(
        f"64-sample training round trips (reward `format`, {args.workers} workers) while {args.samples:,} "
        f"samples are rescored (chunk {args.chunk_size}, window 16)"
    )
    print(f"{'training round trips':<40}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'p50 / alone':>16}")
    for name, times in results.items():
        print(summary(name, times, alone))


if __name__ == "__main__":
    main()
