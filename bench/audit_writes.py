"""Rows per second of ``write_scores`` into SQLite and PostgreSQL, side by side, against a 50,000 rows/s aim.

Each round writes ``--rows`` rows in batches of ``--batch`` into a fresh, migrated store per backend,
one transaction per batch as a worker does (the commit is timed). Batches alternate between the
backends, and which goes first alternates too, so both see the same machine noise. Rows look like a
GRPO step's: groups of 8 completions per prompt (a repeated ``sample_id``), a unique ``sample_hash``
each, 3% errors with their text. Building the rows is not timed; validating them is.

    .venv/bin/python bench/audit_writes.py --rows 200000 --batch 1000

By default SQLite writes to a file in a temporary directory and PostgreSQL to a temporary database
created (and dropped) through ``$REWARDQ_BENCH_POSTGRES_URL`` (default: the local server as
``postgres``). ``--sqlite-url``/``--postgres-url`` write to a given store instead; it is migrated
first, written in every round and not cleaned up, so give an empty one. Figures: docs/audit.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _services import postgres_database
from sqlalchemy import Engine, text

from rewardq.storage import make_engine, upgrade, write_scores

AIM = 50_000
GROUP = 8


def make_batch(
    rng: random.Random, run_id: str, step: int, size: int, text_bytes: int
) -> list[dict[str, Any]]:
    """One batch of audit rows, as a worker writes them for one (chunk, reward)."""
    batch_id = uuid.UUID(int=rng.getrandbits(128)).hex
    now = datetime.now(UTC)
    body = "x" * text_bytes if text_bytes else None
    rows = []
    for i in range(size):
        if i % GROUP == 0:
            prompt = rng.randrange(100_000)
        failed = rng.random() < 0.03
        rows.append(
            {
                "run_id": run_id,
                "step": step,
                "batch_id": batch_id,
                "sample_index": i,
                "sample_hash": hashlib.sha256(f"{batch_id}/{i}".encode()).hexdigest(),
                "sample_id": f"gsm8k-{prompt}",
                "reward": "accuracy",
                "scorer": "math_verify@1:3f2a9c0d41b7",
                "value": None if failed else float(rng.random() < 0.6),
                "status": "error" if failed else "ok",
                "error": "ValueError: could not parse the answer" if failed else None,
                "raw": None,
                "latency_ms": 41.7,
                "attempts": 1,
                "worker_host": "gpu-node-07",
                "worker_gpu": "3",
                "created_at": now,
                "prompt_text": body,
                "completion_text": body,
            }
        )
    return rows


class Store:
    """One backend's target: a fresh store per round (a new file or database) unless a URL was given."""

    def __init__(self, name: str, url: str | None) -> None:
        self.name = name
        self.given = url
        self.rates: list[float] = []
        self.version = ""

    def open(self, stack: contextlib.ExitStack) -> Engine:
        """A migrated store for one round; what it created goes when ``stack`` closes."""
        if self.given is not None:
            url = self.given
        elif self.name == "sqlite":
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="rewardq-bench-"))
            url = f"sqlite:///{Path(directory) / 'audit.db'}"
        else:
            url = stack.enter_context(postgres_database())
        upgrade(url)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        with engine.connect() as conn:
            query = "SELECT sqlite_version()" if self.name == "sqlite" else "SHOW server_version"
            self.version = str(conn.execute(text(query)).scalar()).split()[0]
        return engine


def run_round(stores: list[Store], rows: int, batch: int, text_bytes: int, seed: int) -> None:
    """Write ``rows`` rows to every store, batch by batch, alternating stores; record each one's rows/s."""
    with contextlib.ExitStack() as stack:
        engines = [store.open(stack) for store in stores]
        rng = random.Random(seed)
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        elapsed = [0.0] * len(stores)
        for n, k in enumerate(range(0, rows, batch)):
            size = min(batch, rows - k)
            data = make_batch(rng, run_id, n, size, text_bytes)
            for j in range(len(stores)) if n % 2 == 0 else reversed(range(len(stores))):
                started = time.perf_counter()
                with engines[j].begin() as conn:
                    inserted = write_scores(conn, data)
                elapsed[j] += time.perf_counter() - started
                if inserted != size:
                    raise RuntimeError(f"{stores[j].name}: inserted {inserted} of {size} rows")
        for store, seconds in zip(stores, elapsed, strict=True):
            store.rates.append(rows / seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per backend per round")
    parser.add_argument(
        "--batch", type=int, default=1000, help="rows per write_scores call (one transaction)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each into fresh stores")
    parser.add_argument(
        "--text-bytes", type=int, default=0, help="prompt and completion text per row (store_text)"
    )
    parser.add_argument("--sqlite-url", help="write here instead of a temporary SQLite file")
    parser.add_argument("--postgres-url", help="write here instead of a temporary PostgreSQL database")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    args = parser.parse_args(argv)

    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(names) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    urls = {"sqlite": args.sqlite_url, "postgresql": args.postgres_url}
    stores = [Store(name, urls[name]) for name in names]
    print(
        f"{args.rows:,} rows per backend in batches of {args.batch:,}, {args.repeat} rounds, "
        f"text {args.text_bytes:,} B/row, one transaction per batch, backends interleaved"
    )
    for r in range(args.repeat):
        run_round(stores, args.rows, args.batch, args.text_bytes, seed=r)
        print(f"  round {r + 1}: " + ", ".join(f"{s.name} {s.rates[-1]:,.0f} rows/s" for s in stores))
    versions = ", ".join(f"{s.name} {s.version}" for s in stores)
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, {versions}")
    print(f"{'backend':<12}{'median rows/s':>15}{'min':>10}{'max':>10}{'vs ' + f'{AIM:,}/s':>14}")
    for s in stores:
        median = statistics.median(s.rates)
        print(
            f"{s.name:<12}{median:>15,.0f}{min(s.rates):>10,.0f}{max(s.rates):>10,.0f}{median / AIM:>13.2f}x"
        )


if __name__ == "__main__":
    main()
