"""End-to-end throughput of `rewardq score` on 100,000 samples with `format`, 2 worker processes, audit on.

Runs the real CLI (process start, file read, validation, enqueue, scoring, audit write, gather, file write)
against a private redis-server, with the audit in PostgreSQL and in SQLite, alternating repetitions; and
the bare scorer in-process for scale. With ``--baseline CHECKOUT`` another checkout's code (its
``.venv/bin/rewardq``: CLI and workers) runs the same command in alternation, each with only its own
workers up, and the ratio of the two is printed.

    .venv/bin/python bench/throughput.py --samples 100000 --repeat 2 [--baseline /work/wt/base]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
from _services import REWARDQ, checkout_rewardq, postgres_database, redis_server, sqlite_database, workers
from pydantic import TypeAdapter

from rewardq.samples import to_samples
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.format import FormatReward

AIM = 20_000
AIM_VS_BASELINE = 2.0  # issue 19: `rewardq score` at least twice main's samples/s, same command, same run
STORES = ("postgres", "sqlite")


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


def run_cli(rewardq: str, source: Path, broker: str, database: str, chunk: int, run_id: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update(
        {"REWARDQ_BROKER_URL": broker, "REWARDQ_DATABASE_URL": database, "REWARDQ_CHUNK_SIZE": str(chunk)}
    )
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        subprocess.run(
            [
                rewardq,
                "score",
                str(source),
                "-r",
                "format",
                "-o",
                f"{d}/out.jsonl",
                "--run-id",
                run_id,  # a new run each time: a run id the audit holds would be resumed, not scored
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
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also run another checkout's code (its .venv/bin/rewardq, CLI and workers), alternating",
    )
    args = parser.parse_args()
    codes = {"this": REWARDQ} | ({"baseline": checkout_rewardq(args.baseline)} if args.baseline else {})

    with tempfile.TemporaryDirectory() as d:
        source = Path(d) / "rollouts.jsonl"
        make_rollouts(source, args.samples)
        records = [orjson.loads(line) for line in source.read_bytes().splitlines()]
        samples = TypeAdapter(list[Sample]).validate_python(to_samples(records, max_record_bytes=1 << 20))
        scorer = FormatReward("format", FormatReward.Options())
        t0 = time.perf_counter()
        scorer.score(samples)
        direct = args.samples / (time.perf_counter() - t0)

        results: dict[tuple[str, str], list[float]] = {(c, s): [] for s in STORES for c in codes}
        with contextlib.ExitStack() as stack:
            broker = stack.enter_context(redis_server())
            # each code its own Redis database and audit stores (their schemas may differ)
            brokers = {code: f"{broker[:-1]}{i}" for i, code in enumerate(codes)}
            databases = {
                (code, store): stack.enter_context(
                    postgres_database() if store == "postgres" else sqlite_database()
                )
                for code in codes
                for store in STORES
            }
            worker_args = ("--rewards", "format", "--concurrency", "1", "--loglevel", "WARNING")
            for i in range(args.repeat):
                for store in STORES:
                    # only the measured code's workers are up; which code goes first alternates
                    for code in list(codes)[:: 1 if i % 2 == 0 else -1]:
                        url = databases[code, store]
                        with workers(args.workers, brokers[code], url, *worker_args, rewardq=codes[code]):
                            run_id = f"bench-{store}-{i}"
                            seconds = run_cli(
                                codes[code], source, brokers[code], url, args.chunk_size, run_id
                            )
                        results[code, store].append(args.samples / seconds)

    print(
        f"`rewardq score`, {args.samples:,} samples, reward `format`, {args.workers} workers, chunk "
        f"{args.chunk_size}, audit on ({args.repeat} alternating runs, best shown)"
    )
    if args.baseline:
        print(f"this: {Path(REWARDQ).parents[2]}   baseline: {args.baseline}")
    print(f"{'audit store':<14}{'code':<10}{'samples/s':>12}{'runs':>28}{'best / aim 20k':>17}")
    for (code, store), rates in results.items():
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{store:<14}{code:<10}{max(rates):>12,.0f}{runs:>28}{max(rates) / AIM:>17.2f}")
    if args.baseline:
        for store in STORES:
            ratio = max(results["this", store]) / max(results["baseline", store])
            # each repetition's two runs are adjacent in time: their ratio is less moved by the load
            paired = ", ".join(
                f"{t / b:.2f}"
                for t, b in zip(results["this", store], results["baseline", store], strict=True)
            )
            print(
                f"{store}: this / baseline = {ratio:.2f} (best of each), {paired} (each repetition) "
                f"(aim >= {AIM_VS_BASELINE})"
            )
    print(
        f"bare scorer in-process: {direct:,.0f} samples/s (end-to-end / bare = "
        f"{max(results['this', 'postgres']) / direct:.3f})"
    )


if __name__ == "__main__":
    main()
