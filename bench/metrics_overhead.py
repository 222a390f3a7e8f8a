"""What a worker's Prometheus metrics cost: `rewardq score` with `format`, metrics on and off, side by side.

End to end: the real CLI on ``--samples`` rows against one worker (prefork, concurrency 2: the
multiprocess mode's per-process files), audit in PostgreSQL, runs with ``--metrics-port`` and without
alternating, best of each and the paired ratios printed. In-process: the hooks a chunk of 2,048 `format`
scores passes (chunk timing and meta, audit statuses), on and off, in microseconds per chunk.

    .venv/bin/python bench/metrics_overhead.py --samples 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import timeit
from pathlib import Path

from _services import REWARDQ, free_port, postgres_database, redis_server, workers
from throughput import make_rollouts, run_cli

from rewardq.workers.rewards.base import Score

CHUNK = 2048


def hook_cost_us(on: bool) -> float:
    """Microseconds the hooks take for one chunk of ``CHUNK`` ok scores (best of several rounds)."""
    from rewardq.workers.process import metrics

    if on and metrics.active() is None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
        metrics.enable()
    scores = [Score.ok(1.0)] * CHUNK

    def chunk() -> None:
        metrics.chunk_scored("format", "format", scores, 0.01)
        metrics.samples_audited((("format", scores),), 0.002)

    rounds = 200
    return min(timeit.repeat(chunk, number=rounds, repeat=5)) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    modes = ("off", "on")
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        source = Path(d) / "rollouts.jsonl"
        make_rollouts(source, args.samples)
        broker = stack.enter_context(redis_server())
        database = stack.enter_context(postgres_database())
        base = ("--rewards", "format", "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING")
        for i in range(args.repeat):
            for mode in modes[:: 1 if i % 2 == 0 else -1]:  # which goes first alternates
                extra = ("--metrics-port", str(free_port())) if mode == "on" else ()
                with workers(1, broker, database, *base, *extra):
                    seconds = run_cli(REWARDQ, source, broker, database, CHUNK, f"bench-{mode}-{i}")
                rates[mode].append(args.samples / seconds)
    off_us, on_us = hook_cost_us(on=False), hook_cost_us(on=True)
    print(
        f"`rewardq score`, {args.samples:,} samples, reward `format`, 1 worker (prefork, concurrency 2), "
        f"chunk {CHUNK}, PostgreSQL audit ({args.repeat} alternating runs)"
    )
    print(f"{'metrics':<10}{'best samples/s':>16}{'runs':>30}")
    for mode in modes:
        runs = ", ".join(f"{r:,.0f}" for r in rates[mode])
        print(f"{mode:<10}{max(rates[mode]):>16,.0f}{runs:>30}")
    paired = ", ".join(f"{a / b:.3f}" for a, b in zip(rates["on"], rates["off"], strict=True))
    print(f"on / off = {max(rates['on']) / max(rates['off']):.3f} (best of each); paired: {paired}")
    print(
        f"hooks per {CHUNK}-sample chunk, in-process: off {off_us:.1f} us, on {on_us:.1f} us "
        f"({on_us / CHUNK * 1000:.1f} ns per sample on)"
    )


if __name__ == "__main__":
    main()
