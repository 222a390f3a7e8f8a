"""Offline rescoring of a verl rollout dump with `rewardq score`, end to end through real workers over Redis.

One run, side by side, against a private redis-server, 2 worker processes (`format`) and the audit in
PostgreSQL:
1. the streamed CLI (default window of 16 chunks) and the same CLI with a window wider than the file
   (everything enqueued before anything is gathered: what `rewardq score` did before streaming),
   alternating, on a 100,000-sample verl dump: samples/s;
2. a run killed (SIGKILL) once the audit holds half of the samples, then resumed with the same --run-id:
   the resume's time against a full run's (the audit table is ANALYZEd first, as autovacuum keeps a store
   in service: without statistics PostgreSQL filters the whole run's rows for each chunk's lookup);
3. client peak RSS (the CLI process's own, from wait4) and Redis used_memory (sampled every 20 ms, above
   the idle baseline) while the streamed and the unbounded CLI score a large file (--large-samples).

    .venv/bin/python bench/rescore.py --samples 100000 --large-samples 1000000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis
from _services import REWARDQ, postgres_database, redis_server, workers
from sqlalchemy import create_engine, func, select

from rewardq.storage import scores_table

UNBOUNDED = 1_000_000  # a window no file here reaches: every chunk in flight at once


def make_verl_dump(path: Path, n: int) -> None:
    """What verl's trainer.rollout_data_dir holds: decoded input/output, ground truth, its score, step."""
    with open(path, "wb") as f:
        for i in range(n):
            good = i % 3 != 0
            output = f"<think>7 times {i}</think><answer>{i * 7}</answer>" if good else f"just {i * 7}"
            f.write(
                orjson.dumps(
                    {
                        "input": f"system: think, then answer.\nuser: what is 7*{i}?\nassistant:",
                        "output": output,
                        "gts": str(i * 7),
                        "score": 1.0 if good else 0.0,
                        "step": i // 1024,
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
            )


class Cli:
    """`rewardq score` as a child process; ``wait`` returns its wall time and peak RSS in MB."""

    def __init__(self, source: Path, out: Path, run_id: str, env: dict[str, str], *extra: str) -> None:
        args = [REWARDQ, "score", str(source), "-r", "format", "-o", str(out), "--run-id", run_id]
        self.log = out.with_name(f"{run_id}.log")
        self.started = time.perf_counter()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*args, "--no-progress", *extra], env=env, stdout=log, stderr=log)

    def wait(self) -> tuple[float, float, int]:
        _, status, usage = os.wait4(self.proc.pid, 0)
        seconds = time.perf_counter() - self.started
        self.proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, -signal.SIGKILL):
            raise RuntimeError(f"rewardq score exited {code}:\n{self.log.read_text()}")
        return seconds, usage.ru_maxrss / 1024, code


class RedisMemory:
    """The highest used_memory seen while the block runs, above the value when it started."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.peak = 0

    def __enter__(self) -> RedisMemory:
        self.base = int(self.client.info("memory")["used_memory"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, int(self.client.info("memory")["used_memory"]) - self.base)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def audited(database: str, run_id: str) -> Callable[[], int]:
    engine = create_engine(database)
    query = select(func.count()).select_from(scores_table).where(scores_table.c.run_id == run_id)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    return count


def drained(url: str) -> None:
    """Wait until no task waits in the broker (what a killed client sent is scored by the workers)."""
    client = redis.Redis.from_url(url)
    while any(client.llen(k) for k in client.scan_iter("rewards.format*")):
        time.sleep(0.05)
    time.sleep(0.5)  # the last tasks taken are still being scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--large-samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--no-analyze", action="store_true", help="Resume without ANALYZE of the fresh audit table first."
    )
    args = parser.parse_args()
    analyze = not args.no_analyze

    with tempfile.TemporaryDirectory() as d, redis_server() as broker, postgres_database() as database:
        source, large, out = Path(d) / "12.jsonl", Path(d) / "large.jsonl", Path(d) / "out.jsonl"
        make_verl_dump(source, args.samples)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
        env.update(
            {
                "REWARDQ_BROKER_URL": broker,
                "REWARDQ_DATABASE_URL": database,
                "REWARDQ_CHUNK_SIZE": str(args.chunk_size),
            }
        )
        worker_args = ("--rewards", "format", "--concurrency", "1", "--loglevel", "WARNING")
        rates: dict[str, list[float]] = {"streamed (window 16)": [], "unbounded window": []}
        with workers(args.workers, broker, database, *worker_args):
            for r in range(args.repeat):
                for name, window in zip(rates, (16, UNBOUNDED), strict=True):
                    seconds, _, code = Cli(
                        source, out, f"full-{name[:3]}-{r}", env, "--window", str(window)
                    ).wait()
                    assert code == 0
                    rates[name].append(args.samples / seconds)
            full_seconds, _, _ = Cli(source, out, "full-ref", env).wait()

            count = audited(database, "interrupted")
            cli = Cli(source, out, "interrupted", env)
            while count() < args.samples // 2:
                time.sleep(0.05)
            os.kill(cli.proc.pid, signal.SIGKILL)
            cli.wait()
            at_kill = count()
            drained(broker)
            before_resume = count()
            if analyze:  # what autovacuum gives a store in service; a fresh one has no statistics yet
                with create_engine(database, isolation_level="AUTOCOMMIT").connect() as conn:
                    conn.exec_driver_sql("ANALYZE scores")
            resume_seconds, _, code = Cli(source, out, "interrupted", env).wait()
            assert code == 0
            lines = out.read_bytes().count(b"\n")
            after_resume = count()

            make_verl_dump(large, args.large_samples)
            memory: dict[str, tuple[float, float, float]] = {}
            for name, window in (("streamed (window 16)", 16), ("unbounded window", UNBOUNDED)):
                with RedisMemory(broker) as redis_memory:
                    seconds, rss, code = Cli(
                        large, out, f"large-{window}", env, "--window", str(window)
                    ).wait()
                memory[name] = (
                    rss,
                    redis_memory.peak / 2**20,
                    args.large_samples / seconds if code == 0 else 0.0,
                )

    print(f"`rewardq score` on a {args.samples:,}-sample verl dump, reward `format`, {args.workers} workers,")
    print(f"chunk {args.chunk_size}, audit in PostgreSQL ({args.repeat} alternating runs)")
    print(f"{'client':<24}{'samples/s (best)':>18}{'runs':>24}")
    for name, values in rates.items():
        print(f"{name:<24}{max(values):>18,.0f}{', '.join(f'{v:,.0f}' for v in values):>24}")
    base = max(rates["unbounded window"])
    print(f"streamed / unbounded: {max(rates['streamed (window 16)']) / base:.2f}")
    print()
    print(
        f"interrupted at {at_kill:,} audited samples (SIGKILL); "
        f"{before_resume:,} audited once in-flight tasks drained"
    )
    print(
        f"resume: {resume_seconds:.2f} s vs full run {full_seconds:.2f} s "
        f"(ratio {resume_seconds / full_seconds:.2f}); output lines {lines:,}; "
        f"audited after resume {after_resume:,}"
    )
    print()
    print(f"{args.large_samples:,}-row file ({large_mb(args.large_samples):.0f} MB):")
    print(f"{'client':<24}{'peak RSS MB':>12}{'Redis MB':>10}{'samples/s':>12}")
    for name, (rss, redis_mb, rate) in memory.items():
        print(f"{name:<24}{rss:>12.0f}{redis_mb:>10.1f}{rate:>12,.0f}")


def large_mb(n: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        make_verl_dump(Path(f.name), 1000)
        return os.path.getsize(f.name) * n / 1000 / 2**20


if __name__ == "__main__":
    main()
