"""``paired_scores`` (``rewardq audit diff``) on a PostgreSQL table that was never analysed, then analysed:
main's single SQL join of the two runs against this branch's two ``run_id`` reads paired in Python.

The store holds ``--runs`` runs of ``--rows-per-run`` rows each (one reward), every run scoring the
same samples, as repeated rescorings of one evaluation set do. Autovacuum is off for the table so
that it stays unanalysed until the script runs ``ANALYZE``. Each variant is timed ``--repeat`` times,
interleaved; the median is printed.

    .venv/bin/python bench/audit_diff.py --runs 20 --rows-per-run 50000

PostgreSQL: a temporary database through ``$REWARDQ_BENCH_POSTGRES_URL`` (default: the local server as
``postgres``), dropped afterwards. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from _services import postgres_database
from sqlalchemy import Connection, func, select

from rewardq.storage import make_engine, paired_scores, scores_table, upgrade, write_scores

_c = scores_table.c


def main_paired(conn: Connection, run_a: str, run_b: str) -> list[Any]:
    """main's query (before this branch): each side's latest ids, joined on (sample_hash, reward) in SQL."""

    def latest(run_id: str) -> Any:
        query = select(func.max(_c.id).label("id")).where(_c.run_id == run_id)
        return query.group_by(_c.sample_hash, _c.reward).subquery()

    ids_a, ids_b = latest(run_a), latest(run_b)
    a, b = scores_table.alias("a"), scores_table.alias("b")
    query = (
        select(a.c.sample_hash, a.c.sample_id, a.c.reward, a.c.value, a.c.status, b.c.value, b.c.status)
        .select_from(a.join(ids_a, a.c.id == ids_a.c.id))
        .join(b, (b.c.sample_hash == a.c.sample_hash) & (b.c.reward == a.c.reward))
        .join(ids_b, b.c.id == ids_b.c.id)
        .order_by(a.c.reward, a.c.id)
    )
    return list(conn.execute(query))


def branch_paired(conn: Connection, run_a: str, run_b: str) -> list[Any]:
    return list(paired_scores(conn, run_a, run_b))


def fill(url: str, runs: int, per_run: int, batch: int = 5000) -> None:
    engine = make_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE scores SET (autovacuum_enabled = false)")
    for run in range(runs):
        for k in range(0, per_run, batch):
            rows = [
                {
                    "run_id": f"run-{run}",
                    "step": i // 512,
                    "batch_id": f"r{run}-b{i // 512}",
                    "sample_index": i % 512,
                    "sample_hash": hashlib.sha256(f"sample {i}".encode()).hexdigest(),
                    "sample_id": f"s{i}",
                    "reward": "accuracy",
                    "scorer": "math@1:0123456789ab",
                    "value": float((i * 7 + run) % 2),
                    "status": "ok",
                    "latency_ms": 1.0,
                    "attempts": 1,
                    "worker_host": "bench",
                    "created_at": now,
                }
                for i in range(k, min(k + batch, per_run))
            ]
            with engine.begin() as conn:
                write_scores(conn, rows)
    engine.dispose()


def timed(fn: Callable[[Connection, str, str], list[Any]], conn: Connection) -> tuple[float, int]:
    started = time.perf_counter()
    pairs = fn(conn, "run-0", "run-1")
    return time.perf_counter() - started, len(pairs)


def measure(url: str, repeat: int) -> dict[str, tuple[float, int]]:
    engine = make_engine(url)
    times: dict[str, list[float]] = {"main": [], "branch": []}
    counts: dict[str, int] = {}
    variants = {"main": main_paired, "branch": branch_paired}
    with engine.connect() as conn:
        for n in range(repeat):
            for name in variants if n % 2 == 0 else reversed(list(variants)):
                elapsed, counts[name] = timed(variants[name], conn)
                times[name].append(elapsed)
    engine.dispose()
    return {name: (statistics.median(times[name]), counts[name]) for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rows-per-run", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with postgres_database() as url:
        upgrade(url)
        fill(url, args.runs, args.rows_per_run)
        print(
            f"{args.runs} runs x {args.rows_per_run} rows; pairs of run-0 and run-1; median of {args.repeat}"
        )
        print(f"{'table':<14} {'main (s)':>9} {'branch (s)':>11} {'pairs':>8}")
        for label in ("not analysed", "analysed"):
            if label == "analysed":
                engine = make_engine(url)
                with engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE scores")
                engine.dispose()
            result = measure(url, args.repeat)
            assert result["main"][1] == result["branch"][1], result
            print(
                f"{label:<14} {result['main'][0]:>9.3f} {result['branch'][0]:>11.3f} {result['branch'][1]:>8}"
            )


if __name__ == "__main__":
    main()
