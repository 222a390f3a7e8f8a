"""The audit write as a worker does it, against a bare multi-row INSERT, and concurrent writers of one run.

Three measures, each side by side in one run:

1. rows/s of ``record_scores`` (what a worker runs per task: validate, write, answer what the audit
   holds, commit; chain on) against a bare multi-row ``INSERT … VALUES (…), (…)`` of rows of the same
   shape into the same table of the same store, one transaction per batch. Batches alternate between
   the two, and between SQLite and PostgreSQL; which goes first alternates too.
2. PostgreSQL: four writer processes on one run against one writer process, rows/s over wall time.
3. Where the code has a sealer (``rewardq.storage.seal``): rows sealed per second, sealing what (1)
   and (2) wrote, and whether every run then verifies intact.

    .venv/bin/python bench/audit_path.py --batch 64 --batches 300

Stores: a temporary SQLite file and a temporary PostgreSQL database through
``$REWARDQ_BENCH_POSTGRES_URL`` (default: the local server's ``test`` as ``postgres``), dropped after.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import multiprocessing
import os
import platform
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any

from _services import postgres_database, sqlite_database
from audit_writes import make_batch
from sqlalchemy import Engine, text

from rewardq.storage import make_engine, upgrade, verify_run
from rewardq.storage.record import record_scores

# The sealer exists only where the chain is sealed off the hot path.
HAS_SEALER = importlib.util.find_spec("rewardq.storage.seal") is not None

WRITERS = 4
# Before the sealer, the write chained the rows itself and took the chain's key.
_KEY = {"chain_key": None} if "chain_key" in inspect.signature(record_scores).parameters else {}


def full_write(engine: Engine, rows: list[dict[str, Any]]) -> None:
    record_scores(engine, rows, retry_s=0.0, **_KEY)


def bare_insert(engine: Engine) -> Callable[[list[dict[str, Any]]], Callable[[], None]]:
    """A function preparing one bare multi-row INSERT of a batch (untimed); the result runs it (timed).

    On PostgreSQL the values are rendered into the statement's text beforehand (psycopg's ``mogrify``):
    sent as 1,000s of parameters, psycopg's encoding of each one in Python would be most of the time
    (a 1,000-row batch ran at about 2,500 rows/s), and the baseline is the store's own cost. SQLite binds
    parameters in C."""
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"

    def prepare(rows: list[dict[str, Any]]) -> Callable[[], None]:
        columns = list(rows[0])
        one = "(" + ", ".join([mark] * len(columns)) + ")"
        statement = f"INSERT INTO scores ({', '.join(columns)}) VALUES " + ", ".join([one] * len(rows))
        params = [
            v.astimezone(UTC).replace(tzinfo=None).isoformat(" ") if sqlite and k == "created_at" else v
            for row in rows
            for k, v in row.items()
        ]

        if not sqlite:
            import psycopg

            with engine.connect() as conn:
                dbapi = conn.connection.driver_connection
                assert isinstance(dbapi, psycopg.Connection)
                statement = psycopg.ClientCursor(dbapi).mogrify(statement, params).replace("%", "%%")

        def run() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql(statement, tuple(params) if sqlite else ())

        return run

    return prepare


def side_by_side(urls: dict[str, str], batch: int, batches: int) -> dict[str, tuple[float, float]]:
    """rows/s of (full path, bare INSERT) per backend, writing ``batches`` batches to each."""
    engines = {name: make_engine(url) for name, url in urls.items()}
    bare = {name: bare_insert(e) for name, e in engines.items()}
    spent = {(name, way): 0.0 for name in urls for way in ("full", "bare")}
    rng = random.Random(0)
    run = {name: f"path-{name}" for name in urls}
    for n in range(batches):
        order = [(name, way) for name in urls for way in ("full", "bare")]
        for name, way in order if n % 2 == 0 else reversed(order):
            rows = make_batch(rng, run[name] if way == "full" else f"bare-{name}", n, batch, 0)
            if way == "full":
                started = time.perf_counter()
                full_write(engines[name], rows)
            else:
                insert = bare[name](rows)
                started = time.perf_counter()
                insert()
            spent[name, way] += time.perf_counter() - started
    for e in engines.values():
        e.dispose()
    total = batch * batches
    return {name: (total / spent[name, "full"], total / spent[name, "bare"]) for name in urls}


def _writer(url: str, run: str, seed: int, batch: int, batches: int, go: Any, out: Any) -> None:
    engine = make_engine(url)
    rng = random.Random(seed)
    data = [make_batch(rng, run, n, batch, 0) for n in range(batches + 1)]
    full_write(engine, data[0])  # connect and warm up, untimed
    go.wait()
    started, cpu = time.monotonic(), time.process_time()
    for rows in data[1:]:
        full_write(engine, rows)
    out.put((started, time.monotonic(), time.process_time() - cpu))
    engine.dispose()


_WAITS = text(
    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
    "WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
)


def writers(url: str, count: int, batch: int, batches: int) -> tuple[float, float, float]:
    """rows/s of ``count`` processes each writing ``batches`` batches of one run, over their wall time;
    the CPUs the writers' own processes kept busy (their CPU time over the wall time); and the share of
    the writers' server sessions found waiting on a lock, sampled every 10 ms while they wrote."""
    context = multiprocessing.get_context("spawn")
    go, out = context.Event(), context.Queue()
    run = f"writers{count}-{uuid.uuid4().hex[:6]}"
    procs = [
        context.Process(target=_writer, args=(url, run, 1000 + w, batch, batches, go, out))
        for w in range(count)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)  # let every writer connect and warm up before the start
    go.set()
    locked = sampled = 0
    engine = make_engine(url)
    with engine.connect() as conn:
        while out.qsize() < count:
            waits = [bool(w) for (w,) in conn.execute(_WAITS)]
            conn.rollback()
            locked, sampled = locked + sum(waits), sampled + len(waits)
            time.sleep(0.01)
    engine.dispose()
    spans = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"a writer exited with {p.exitcode}")
    wall = max(e for _, e, _ in spans) - min(s for s, _, _ in spans)
    return count * batch * batches / wall, sum(c for _, _, c in spans) / wall, locked / max(sampled, 1)


def sealed(url: str) -> tuple[int, float, list[str]]:
    """Seal every run of the store: (rows sealed, rows/s, runs that do not verify intact)."""
    from rewardq.storage.seal import seal_run

    engine = make_engine(url)
    with engine.connect() as conn:
        runs = [r[0] for r in conn.execute(text("SELECT DISTINCT run_id FROM scores"))]
    started, count = time.perf_counter(), 0
    for run in runs:
        count += seal_run(engine, run, None) or 0
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        broken = [run for run in runs if not verify_run(conn, run).intact]
    engine.dispose()
    return count, count / seconds if seconds else 0.0, broken


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="rows per task (one transaction)")
    parser.add_argument("--batches", type=int, default=300, help="batches per side per backend")
    parser.add_argument("--writer-batches", type=int, default=150, help="batches per writer process")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the one-vs-four writers")
    args = parser.parse_args(argv)
    with sqlite_database() as sqlite_url, postgres_database() as pg_url:
        urls = {"sqlite": sqlite_url, "postgresql": pg_url}
        for url in urls.values():
            upgrade(url)
        print(
            f"{platform.python_version()}, {os.cpu_count()} CPUs; {args.batch} rows a task, "
            f"{args.batches} tasks per side per backend, interleaved"
        )
        print(f"{'store':<12}{'full path rows/s':>18}{'bare INSERT rows/s':>20}{'full / bare':>13}")
        paths = side_by_side(urls, args.batch, args.batches)
        for name, (full, bare) in paths.items():
            print(f"{name:<12}{full:>18,.0f}{bare:>20,.0f}{full / bare:>12.2f}x")
        one, four = [], []
        for _ in range(args.repeat):
            one.append(writers(pg_url, 1, args.batch, args.writer_batches))
            four.append(writers(pg_url, WRITERS, args.batch, args.writer_batches))
        rate1, rate4 = median([r for r, _, _ in one]), median([r for r, _, _ in four])
        print(
            f"postgresql, one run: 1 writer {rate1:,.0f} rows/s, {WRITERS} writers {rate4:,.0f} rows/s "
            f"({rate4 / rate1:.2f}x; rounds: "
            + ", ".join(f"{a:,.0f}/{b:,.0f}" for (a, _, _), (b, _, _) in zip(one, four, strict=True))
            + f"); CPUs busy in the writers' own processes: {median([c for _, c, _ in one]):.2f} for 1, "
            f"{median([c for _, c, _ in four]):.2f} for {WRITERS}; {WRITERS} writers' sessions waiting on a "
            f"lock: {median([w for _, _, w in four]):.0%}; load average {os.getloadavg()[0]:.1f}"
        )
        if not HAS_SEALER:
            print("sealer: none in this code (rows are chained in the write)")
            return
        for name, url in urls.items():
            count, rate, broken = sealed(url)
            verdict = "every run intact" if not broken else f"NOT intact: {', '.join(broken)}"
            full, bare = paths[name]
            both = 1 / (1 / full + 1 / rate)
            print(
                f"sealer, {name}: {count:,} rows sealed at {rate:,.0f} rows/s; {verdict}; write then seal, "
                f"one after the other: {both:,.0f} rows/s ({both / bare:.2f}x the bare INSERT)"
            )


if __name__ == "__main__":
    main()
