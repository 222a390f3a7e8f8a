"""Queue overhead: a 64-sample `format` batch through Redis + a worker process + the audit write, versus
calling the scorer directly in-process. Each configuration (audit store, worker pool) runs in turn with
only its worker up; in every iteration the direct call and the queued one run back to back, and the
difference is taken per iteration; prints its p50 and p99.

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
    parser.add_argument(
        "--configs",
        default=",".join(f"{db}/{pool}" for db, pool in CONFIGS),
        help="comma-separated store/pool pairs to run",
    )
    args = parser.parse_args()
    configs = [tuple(c.split("/")) for c in args.configs.split(",")]

    rows = [
        {"prompt": f"q{i}", "completion": f"<think>step {i}</think><answer>{i}</answer>"} for i in range(64)
    ]
    samples = TypeAdapter(list[Sample]).validate_python(to_samples(rows, max_record_bytes=1 << 20))
    scorer = FormatReward("format", FormatReward.Options())
    timings: dict[str, list[float]] = {
        name: [] for name in ["direct", *(f"{db}/{pool}" for db, pool in configs)]
    }

    differences: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(redis_server())
        urls = {
            "postgres": stack.enter_context(postgres_database()),
            "sqlite": stack.enter_context(sqlite_database()),
        }
        # One configuration at a time, only its worker running (idle workers of the others would add
        # about 1.5 ms here); within a phase the direct call and the queued one alternate.
        for db, pool in configs:
            name = f"{db}/{pool}"
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
            settings = Settings.from_env({}, broker_url=broker, database_url=urls[db])
            with workers(1, broker, urls[db], *worker_args), RewardClient(settings) as client:
                differences[name] = []
                for i in range(args.warmup + args.iterations):
                    t0 = time.perf_counter()
                    scorer.score(samples)
                    direct = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    result = client.submit(rows, "format", run_id="bench", step=i).get(timeout=30)
                    queued = time.perf_counter() - t0
                    assert result.statuses["format"] == ["ok"] * 64
                    if i >= args.warmup:
                        timings["direct"].append(direct * 1000)
                        timings[name].append(queued * 1000)
                        differences[name].append((queued - direct) * 1000)

    print(f"64-sample `format` batch from a trainer's rows, {args.iterations} interleaved iterations, in ms")
    print(
        f"{'path (audit store / pool)':<30}{'p50':>8}{'p99':>8}{'overhead p50':>14}{'p99':>8}{'p50/aim':>9}"
    )
    print(f"{'direct scorer call':<30}{pct(timings['direct'], 50):>8.3f}{pct(timings['direct'], 99):>8.3f}")
    for name, diff in differences.items():
        print(
            f"{'queue + audit: ' + name:<30}{pct(timings[name], 50):>8.3f}{pct(timings[name], 99):>8.3f}"
            f"{pct(diff, 50):>14.3f}{pct(diff, 99):>8.3f}{pct(diff, 50) / AIM_MS:>9.2f}"
        )


if __name__ == "__main__":
    main()
