"""Soak: several producer processes submit batches continuously for ``--minutes`` against running workers
(a private redis-server, a SQLite or PostgreSQL audit store, ``rewardq worker`` processes), then report
what came back and how memory moved (issue 8, "Delivery guarantees, proven", item 8).

    .venv/bin/python bench/soak.py --minutes 10 --producers 3 --workers 2

Prints batches, samples, lost (a sample whose result is not ``ok``/``unscorable``, or that has no audit
row), duplicated (audit rows beyond one per (batch, sample, reward)), and memory growth as the ratio of
the end to minute 1 and to half way: each worker process's RSS (main and pool children, by pid) and
Redis' used_memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from _services import postgres_database, redis_server, sqlite_database, workers

from rewardq import RewardClient, Settings

REWARDS = ["format", "accuracy"]


def make_batch(size: int) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    return [
        {
            "prompt": f"what is 7*{i}?",
            "completion": f"<think>{tag} {i}</think><answer>{i * 7}</answer>" if i % 3 else f"just {i}",
            "solution": str(i * 7),
            "id": f"{tag}-{i}",
        }
        for i in range(size)
    ]


def produce(broker: str, run_id: str, until: float, batch_size: int, chunk_size: int, out: Any) -> None:
    """One producer process: batch after batch until ``until`` (a wall-clock time); sends its counts."""
    settings = Settings.from_env({}, broker_url=broker, chunk_size=chunk_size, serve_wait=0)
    batches = samples = lost = 0
    with RewardClient(settings) as client:
        step = 0
        while time.time() < until:
            result = client.score(make_batch(batch_size), REWARDS, run_id=run_id, step=step, timeout=300)
            step += 1
            batches += 1
            samples += batch_size
            lost += sum(
                1 for statuses in result.statuses.values() for s in statuses if s not in {"ok", "unscorable"}
            )
    out.put({"batches": batches, "samples": samples, "lost": lost})


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (a prefork worker's pool), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def memory(worker_pids: list[int], broker: str) -> dict[str, int]:
    """RSS (KiB) of each worker process and pool child, and Redis' used_memory (bytes)."""
    snapshot: dict[str, int] = {}
    for pid in worker_pids:
        for process, label in [
            (pid, f"worker {pid}"),
            *((c, f"worker {pid} child {c}") for c in children(pid)),
        ]:
            if (rss := rss_kib(process)) is not None:
                snapshot[label] = rss
    client = redis.Redis.from_url(broker)
    snapshot["redis used_memory"] = int(client.info("memory")["used_memory"])
    client.close()
    return snapshot


def audit_counts(database: str, run_ids: list[str]) -> tuple[int, int]:
    """Audit rows of the soak's runs, and the distinct (batch, sample, reward) among them."""
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            rows, distinct = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT batch_id || ':' || sample_index || ':' || reward)"
                    " FROM scores WHERE run_id IN :runs"
                ).bindparams(sa.bindparam("runs", expanding=True)),
                {"runs": run_ids},
            ).one()
    finally:
        engine.dispose()
    return int(rows), int(distinct)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--postgres", action="store_true", help="audit in PostgreSQL (default: SQLite)")
    args = parser.parse_args()

    database_cm = postgres_database() if args.postgres else sqlite_database()
    with redis_server() as broker, database_cm as database:
        worker_args = ["--rewards", ",".join(REWARDS), "--concurrency", str(args.concurrency)]
        with workers(args.workers, broker, database, *worker_args) as procs:
            pids = [p.pid for p in procs]
            run_ids = [f"soak-{i}-{uuid.uuid4().hex[:6]}" for i in range(args.producers)]
            started = time.time()
            until = started + args.minutes * 60
            # spawn: a forked producer would share this process's broker connections (the ping's).
            context = multiprocessing.get_context("spawn")
            out: multiprocessing.Queue[dict[str, int]] = context.Queue()
            producers = [
                context.Process(
                    target=produce, args=(broker, run_id, until, args.batch_size, args.chunk_size, out)
                )
                for run_id in run_ids
            ]
            for p in producers:
                p.start()
            time.sleep(max(0.0, started + min(60.0, args.minutes * 30) - time.time()))  # minute 1
            first = memory(pids, broker)
            time.sleep(max(0.0, started + args.minutes * 30 - time.time()))  # half way
            middle = memory(pids, broker)
            totals = {"batches": 0, "samples": 0, "lost": 0}
            for _ in producers:
                for key, value in out.get(timeout=args.minutes * 60 + 600).items():
                    totals[key] += value
            for p in producers:
                p.join()
            last = memory(pids, broker)
            rows, distinct = audit_counts(database, run_ids)

    expected = totals["samples"] * len(REWARDS)
    print(f"minutes {args.minutes}, producers {args.producers}, workers {args.workers}")
    print(f"batches {totals['batches']}, samples {totals['samples']}, scores expected {expected}")
    missing = max(0, expected - distinct)
    print(f"lost {totals['lost'] + missing} (results {totals['lost']}, audit {missing})")
    print(f"duplicated {rows - distinct}")
    print("memory growth, end / minute 1 and end / half way (flat when the second is about 1):")
    for label, before in first.items():
        after, half = last.get(label), middle.get(label)
        if after is None or half is None:
            print(f"  {label}: gone")
            continue
        print(f"  {label}: {after / before:.3f}, {after / half:.3f} ({before} -> {half} -> {after})")


if __name__ == "__main__":
    main()
