"""End-to-end throughput of `rewardq score` on 100,000 samples with `format`, 2 worker processes, audit on.

Runs the real CLI (process start, file read, validation, enqueue, scoring, audit write, gather, file write)
against a private redis-server, with the audit in PostgreSQL and in SQLite, alternating repetitions; and
the bare scorer in-process for scale.

    .venv/bin/python bench/throughput.py --samples 100000 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
from _services import REWARDQ, postgres_database, redis_server, sqlite_database, workers
from pydantic import TypeAdapter

from rewardq.samples import to_samples
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.format import FormatReward

AIM = 20_000


def make_rollouts(path: Path, n: int) -> None:
    with open(path, "wb") as f:
        for i in range(n):
            good = i % 3 != 0
            completion = f"<think>working on {i}</think><answer>{i * 7}</answer>" if good else f"just {i}"
            f.write(
                orjson.dumps(
                    {
                        "prompt": [{"role": "user", "content": f"what is 7*{i}?"}],
                        "completion": completion,
                        "solution": str(i * 7),
                        "id": f"s{i}",
                    }
                )
                + b"\n"
            )


def run_cli(source: Path, broker: str, database: str, chunk: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update(
        {"REWARDQ_BROKER_URL": broker, "REWARDQ_DATABASE_URL": database, "REWARDQ_CHUNK_SIZE": str(chunk)}
    )
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        subprocess.run(
            [
                REWARDQ,
                "score",
                str(source),
                "-r",
                "format",
                "-o",
                f"{d}/out.jsonl",
                "--run-id",
                "bench",
                "--no-progress",
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as d:
        source = Path(d) / "rollouts.jsonl"
        make_rollouts(source, args.samples)
        records = [orjson.loads(line) for line in source.read_bytes().splitlines()]
        samples = TypeAdapter(list[Sample]).validate_python(to_samples(records, max_record_bytes=1 << 20))
        scorer = FormatReward("format", FormatReward.Options())
        t0 = time.perf_counter()
        scorer.score(samples)
        direct = args.samples / (time.perf_counter() - t0)

        results: dict[str, list[float]] = {"postgres": [], "sqlite": []}
        with redis_server() as broker, postgres_database() as pg_url, sqlite_database() as sqlite_url:
            brokers = {"postgres": broker, "sqlite": broker[:-1] + "1"}
            databases = {"postgres": pg_url, "sqlite": sqlite_url}
            worker_args = ("--rewards", "format", "--concurrency", "1", "--loglevel", "WARNING")
            with (
                workers(args.workers, brokers["postgres"], pg_url, *worker_args),
                workers(args.workers, brokers["sqlite"], sqlite_url, *worker_args),
            ):
                for _ in range(args.repeat):
                    for name in results:
                        seconds = run_cli(source, brokers[name], databases[name], args.chunk_size)
                        results[name].append(args.samples / seconds)

    print(
        f"`rewardq score`, {args.samples:,} samples, reward `format`, {args.workers} workers, chunk "
        f"{args.chunk_size}, audit on ({args.repeat} alternating runs, best shown)"
    )
    print(f"{'audit store':<14}{'samples/s':>12}{'runs':>28}{'best / aim 20k':>17}")
    for name, rates in results.items():
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{name:<14}{max(rates):>12,.0f}{runs:>28}{max(rates) / AIM:>17.2f}")
    print(
        f"bare scorer in-process: {direct:,.0f} samples/s (end-to-end / bare = "
        f"{max(results['postgres']) / direct:.3f})"
    )


if __name__ == "__main__":
    main()
