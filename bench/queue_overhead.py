"""Queue overhead: a 64-sample `format` batch through Redis + a worker process + the audit write, versus
calling the scorer directly in-process. Interleaved per iteration; prints p50/p99 of the difference.

    .venv/bin/python bench/queue_overhead.py --iterations 300
"""

from __future__ import annotations

import argparse
import statistics
import time

from _services import postgres_database, redis_server, sqlite_database, workers

from rewardq import RewardClient, Settings
from rewardq.samples import to_samples
from rewardq.workers.rewards.format import FormatReward

AIM_MS = 3.0


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
    samples = to_samples(rows, max_record_bytes=1 << 20)
    scorer = FormatReward("format", FormatReward.Options())
    timings: dict[str, list[float]] = {"direct": [], "sqlite": [], "postgres": []}

    with redis_server() as broker, sqlite_database() as sqlite_url, postgres_database() as pg_url:
        sqlite_broker, pg_broker = broker, broker[:-1] + "1"
        with (
            workers(
                1,
                sqlite_broker,
                sqlite_url,
                "--rewards",
                "format",
                "--concurrency",
                "1",
                "--loglevel",
                "WARNING",
            ),
            workers(
                1, pg_broker, pg_url, "--rewards", "format", "--concurrency", "1", "--loglevel", "WARNING"
            ),
        ):
            clients = {
                "sqlite": RewardClient(
                    Settings.from_env({}, broker_url=sqlite_broker, database_url=sqlite_url)
                ),
                "postgres": RewardClient(Settings.from_env({}, broker_url=pg_broker, database_url=pg_url)),
            }
            for i in range(args.warmup + args.iterations):
                t0 = time.perf_counter()
                scorer.score(samples)
                direct = time.perf_counter() - t0
                queued = {}
                for name, client in clients.items():
                    t0 = time.perf_counter()
                    result = client.submit(samples, "format", run_id="bench", step=i).get(timeout=30)
                    queued[name] = time.perf_counter() - t0
                    assert result.statuses["format"] == ["ok"] * 64
                if i >= args.warmup:
                    timings["direct"].append(direct * 1000)
                    for name, seconds in queued.items():
                        timings[name].append(seconds * 1000)
            for client in clients.values():
                client.close()

    print(f"64-sample `format` batch, {args.iterations} interleaved iterations (ms)")
    print(f"{'path':<28}{'p50':>9}{'p99':>9}")
    print(f"{'direct scorer call':<28}{pct(timings['direct'], 50):>9.3f}{pct(timings['direct'], 99):>9.3f}")
    for name in ("sqlite", "postgres"):
        diff = [q - d for q, d in zip(timings[name], timings["direct"], strict=True)]
        print(
            f"{'queue + audit (' + name + ')':<28}"
            f"{pct(timings[name], 50):>9.3f}{pct(timings[name], 99):>9.3f}"
        )
        p50 = pct(diff, 50)
        print(
            f"{'  overhead (difference)':<28}{p50:>9.3f}{pct(diff, 99):>9.3f}   p50 / aim {AIM_MS} ms = "
            f"{p50 / AIM_MS:.2f}"
        )
    print(f"mean direct {statistics.fmean(timings['direct']):.3f} ms")


if __name__ == "__main__":
    main()
