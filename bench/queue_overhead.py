"""Queue overhead: a 64-sample `format` batch through Redis + a worker process + the audit write, versus
calling the scorer directly in-process. Every configuration runs in each iteration, interleaved, and
the difference to the direct call is taken per iteration; prints its p50 and p99.

    .venv/bin/python bench/queue_overhead.py --iterations 300
"""

from __future__ import annotations

import argparse
import contextlib
import time

from _services import postgres_database, redis_server, sqlite_database, workers
from pydantic import TypeAdapter

from rewardq import RewardClient, Settings
from rewardq.samples import to_samples
from rewardq.schema import Sample
from rewardq.workers.rewards.format import FormatReward

AIM_MS = 3.0
CONFIGS = (("postgres", "solo"), ("postgres", "prefork"), ("sqlite", "solo"), ("sqlite", "prefork"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()

    rows = [
        {"prompt": f"q{i}", "completion": f"<think>step {i}</think><answer>{i}</answer>"} for i in range(64)
    ]
    samples = TypeAdapter(list[Sample]).validate_python(to_samples(rows, max_record_bytes=1 << 20))
    scorer = FormatReward("format", FormatReward.Options())
    timings: dict[str, list[float]] = {
        name: [] for name in ["direct", *(f"{db}/{pool}" for db, pool in CONFIGS)]
    }

    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(redis_server())
        urls = {
            "postgres": stack.enter_context(postgres_database()),
            "sqlite": stack.enter_context(sqlite_database()),
        }
        clients = {}
        for n, (db, pool) in enumerate(CONFIGS):
            db_broker = f"{broker[:-1]}{n}"  # a Redis database per configuration: separate queues
            worker_args = (
                "--rewards",
                "format",
                "--pool",
                pool,
                "--concurrency",
                "1",
                "--loglevel",
                "WARNING",
            )
            stack.enter_context(workers(1, db_broker, urls[db], *worker_args))
            client = RewardClient(Settings.from_env({}, broker_url=db_broker, database_url=urls[db]))
            clients[f"{db}/{pool}"] = stack.enter_context(client)
        for i in range(args.warmup + args.iterations):
            t0 = time.perf_counter()
            scorer.score(samples)
            direct = time.perf_counter() - t0
            queued = {}
            for name, client in clients.items():
                t0 = time.perf_counter()
                result = client.submit(rows, "format", run_id="bench", step=i).get(timeout=30)
                queued[name] = time.perf_counter() - t0
                assert result.statuses["format"] == ["ok"] * 64
            if i >= args.warmup:
                timings["direct"].append(direct * 1000)
                for name, seconds in queued.items():
                    timings[name].append(seconds * 1000)

    print(f"64-sample `format` batch from a trainer's rows, {args.iterations} interleaved iterations, in ms")
    print(
        f"{'path (audit store / pool)':<30}{'p50':>8}{'p99':>8}{'overhead p50':>14}{'p99':>8}{'p50/aim':>9}"
    )
    print(f"{'direct scorer call':<30}{pct(timings['direct'], 50):>8.3f}{pct(timings['direct'], 99):>8.3f}")
    for name in clients:
        diff = [q - d for q, d in zip(timings[name], timings["direct"], strict=True)]
        print(
            f"{'queue + audit: ' + name:<30}{pct(timings[name], 50):>8.3f}{pct(timings[name], 99):>8.3f}"
            f"{pct(diff, 50):>14.3f}{pct(diff, 99):>8.3f}{pct(diff, 50) / AIM_MS:>9.2f}"
        )


if __name__ == "__main__":
    main()
