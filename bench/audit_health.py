"""What ``rewardq audit health`` costs on a large run, against ``rewardq audit stats`` (SQL aggregates only)
on the same run, side by side; and what one scrape of the health collector costs as the run grows.

The store holds two runs of ``--steps`` and ``--steps // 4`` steps, ``--samples`` samples a step, each scored
by three rewards (a 0/1 rule, a judge, a reward model) with completion text stored, plus ``--other-runs``
runs of the same shape as the short one, so that the table is larger than the runs read. The table is
analysed. Each variant is timed ``--repeat`` times, interleaved; the median is printed.

    .venv/bin/python bench/audit_health.py --steps 200 --samples 512 --repeat 3

PostgreSQL: a temporary database through ``$REWARDQ_BENCH_POSTGRES_URL`` (default: the local server as
``postgres``), dropped afterwards. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from _services import postgres_database
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine

from rewardq.storage import make_engine, run_health, step_stats, upgrade, write_scores
from rewardq.storage.health_metrics import HealthCollector

REWARDS = ("rule", "judge", "rm")


def fill(engine: Engine, run: str, steps: int, samples: int) -> int:
    rng = random.Random(run)
    now = datetime.now(UTC)
    written = 0
    for step in range(steps):
        rows = []
        for i in range(samples):
            text = "w" * rng.randint(20, 800)
            digest = hashlib.sha256(f"{run} {step} {i}".encode()).hexdigest()
            rule = float(rng.random() < 0.5)
            values = {"rule": rule, "judge": 0.7 * rule + 0.3 * rng.random(), "rm": len(text) / 800}
            for reward in REWARDS:
                rows.append(
                    {
                        "run_id": run,
                        "step": step,
                        "batch_id": f"{run}-{step}",
                        "sample_index": i,
                        "sample_hash": digest,
                        "reward": reward,
                        "scorer": f"{reward}@1:0123456789ab",
                        "value": values[reward],
                        "status": "ok",
                        "latency_ms": 1.0,
                        "attempts": 1,
                        "worker_host": "bench",
                        "created_at": now,
                        "completion_text": text,
                    }
                )
        with engine.begin() as conn:
            written += write_scores(conn, rows)
    return written


def median_times(variants: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for n in range(repeat):
        for name in variants if n % 2 == 0 else reversed(list(variants)):
            started = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--other-runs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    short = max(args.steps // 4, 2)
    with postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        rows = {"long": fill(engine, "long", args.steps, args.samples)}
        rows["short"] = fill(engine, "short", short, args.samples)
        for k in range(args.other_runs):
            fill(engine, f"other-{k}", short, args.samples)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE scores")

        def stats(run: str) -> Callable[[], Any]:
            def read() -> Any:
                with engine.connect() as conn:
                    return step_stats(conn, run)

            return read

        def health(run: str) -> Callable[[], Any]:
            def read() -> Any:
                with engine.connect() as conn:
                    return run_health(conn, run)

            return read

        def scrape(run: str) -> Callable[[], Any]:
            registry = CollectorRegistry()
            registry.register(HealthCollector(engine, [run]))
            return lambda: generate_latest(registry)

        print(f"{args.samples} samples a step x {len(REWARDS)} rewards; median of {args.repeat}, seconds")
        print(f"{'run':<26} {'rows':>8} {'stats':>7} {'health':>7} {'ratio':>6} {'scrape':>7}")
        for run, steps in (("long", args.steps), ("short", short)):
            t = median_times({"stats": stats(run), "health": health(run), "scrape": scrape(run)}, args.repeat)
            print(
                f"{run + f' ({steps} steps)':<26} {rows[run]:>8} {t['stats']:>7.3f} {t['health']:>7.3f} "
                f"{t['health'] / t['stats']:>5.1f}x {t['scrape']:>7.3f}"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
