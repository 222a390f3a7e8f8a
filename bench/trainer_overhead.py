"""Trainer-side cost per training step of 256 completions: rewardq's TRL reward functions
(``client.reward_funcs``, through Redis, a worker process and the audit write) against calling the same
rule rewards in-process, as TRL would call a local reward function. Each step calls both back to back
with TRL's keyword arguments; prints p50/p99 of each, the per-step overhead (difference) and the ratio
(aims: one reward <= 5x, two <= 3x). Also the bytes that cross Redis during the step (``INFO stats``
``total_net_input_bytes`` / ``total_net_output_bytes`` before and after it, on the bench's own
redis-server, less what the INFO calls themselves cost), as ratios to the samples' own JSON (aim: what
is written to Redis <= 1.5x; what is read is once per reward's worker, as the samples must reach it).
``--baseline CHECKOUT`` also runs this script under that checkout's ``.venv`` (its client and worker),
``--rounds`` times each, alternating, and prints its figures beside these.

    .venv/bin/python bench/trainer_overhead.py --steps 200 [--baseline /work/wt/base --rounds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from _services import checkout_rewardq, postgres_database, redis_server, sqlite_database, workers
from pydantic import TypeAdapter

from rewardq import RewardClient, Settings
from rewardq.integrations.trl import trl_rows
from rewardq.samples import to_samples
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward
from rewardq.workers.rewards.rules.format import FormatReward
from rewardq.workers.rewards.rules.repetition import RepetitionReward

BATCH = 256
AIM_TIME = {1: 5.0, 2: 3.0}  # rewardq p50 / in-process p50, by number of rewards
AIM_BYTES = 1.5  # bytes written to Redis per step / the samples' own JSON (see docs/benchmarks.md)
CASES: dict[str, list[Reward]] = {
    "format": [FormatReward("format", FormatReward.Options())],
    "format, repetition": [
        FormatReward("format", FormatReward.Options()),
        RepetitionReward("repetition", RepetitionReward.Options()),
    ],
}
SAMPLES = TypeAdapter(list[Sample])


@dataclass
class TrainerState:
    """What TRL passes as ``trainer_state``, as far as a reward function reads it."""

    global_step: int


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def trl_kwargs(step: int) -> dict[str, Any]:
    """TRL's keyword arguments for one step: 256 completions of about 1 KB, a dataset column, state."""
    completions = [
        f"<think>step {step}, sample {i}: "
        + "let me work this out carefully. " * 30
        + f"</think><answer>{i}</answer>"
        for i in range(BATCH)
    ]
    return {
        "prompts": [f"Question {i // 8} of step {step}?" for i in range(BATCH)],
        "completions": completions,
        "completion_ids": [list(range(200)) for _ in range(BATCH)],
        "solution": [str(i) for i in range(BATCH)],
        "trainer_state": TrainerState(step),
        "log_extra": lambda column, values: None,
        "log_metric": lambda name, value: None,
    }


def in_process(scorers: list[Reward]) -> Callable[..., list[list[float | None]]]:
    """The same rule rewards as local TRL reward functions: rows → samples → score, per reward."""

    def call(**kwargs: Any) -> list[list[float | None]]:
        samples = SAMPLES.validate_python(to_samples(trl_rows(kwargs), max_record_bytes=1 << 20))
        return [[s.value for s in scorer.score(samples)] for scorer in scorers]

    return call


def net_bytes(client: Any) -> tuple[int, int]:
    """Redis's counters of bytes read from and written to all its clients so far."""
    stats = client.info("stats")
    return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


def measure(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each case's per-step figures: ms in-process and through rewardq, Redis bytes in and out."""
    report: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(redis_server())
        database = stack.enter_context(postgres_database() if args.store == "postgres" else sqlite_database())
        worker_args = ("--rewards", "format,repetition", "--concurrency", "2", "--loglevel", "WARNING")
        stack.enter_context(workers(1, broker, database, *worker_args))
        client = stack.enter_context(
            RewardClient(Settings.from_env({}, broker_url=broker, database_url=database))
        )
        stats = redis.Redis.from_url(broker)
        stack.callback(stats.close)
        # what one INFO costs in each counter (its command in, its reply out), taken off every step
        first, second = net_bytes(stats), net_bytes(stats)
        info_in, info_out = second[0] - first[0], second[1] - first[1]
        for name, scorers in CASES.items():
            funcs = client.reward_funcs({s.name: 1.0 for s in scorers}, run_id="bench")
            local = in_process(scorers)
            case: dict[str, Any] = {
                "rewards": len(scorers),
                "direct": [],
                "queued": [],
                "in": [],
                "out": [],
                "json": [],
            }
            for step in range(args.warmup + args.steps):
                kwargs = trl_kwargs(step)
                t0 = time.perf_counter()
                expected = local(**kwargs)
                t1 = time.perf_counter()
                before = net_bytes(stats)
                t2 = time.perf_counter()
                got = [func(**kwargs) for func in funcs]
                t3 = time.perf_counter()
                after = net_bytes(stats)
                assert got == expected, "rewardq's values equal the in-process ones"
                if step >= args.warmup:
                    wire = to_samples(trl_rows(kwargs), max_record_bytes=1 << 20)
                    case["json"].append(len(orjson.dumps(wire)))
                    case["direct"].append((t1 - t0) * 1000)
                    case["queued"].append((t3 - t2) * 1000)
                    case["in"].append(after[0] - before[0] - info_in)
                    case["out"].append(after[1] - before[1] - info_out)
            report[name] = case
    return report


def run_baseline(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """This script's figures under the ``--baseline`` checkout's .venv (its rewardq client and worker)."""
    python = str(Path(checkout_rewardq(args.baseline)).with_name("python"))
    argv = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--store", args.store]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([python, __file__, *argv, "--json-out", out.name], check=True)
        return dict(json.loads(Path(out.name).read_text()))


def show(label: str, report: dict[str, dict[str, Any]]) -> None:
    header = ("in-process p50", 15), ("rewardq p50", 12), ("p99", 8), ("overhead p50", 14), ("ratio", 7)
    print(f"{label + ': reward_funcs of':<34}" + "".join(f"{t:>{w}}" for t, w in header) + "  aim")
    for name, case in report.items():
        direct, queued = pct(case["direct"], 50), pct(case["queued"], 50)
        overhead = pct([q - d for q, d in zip(case["queued"], case["direct"], strict=True)], 50)
        print(
            f"{name:<34}{direct:>15.2f}{queued:>12.2f}{pct(case['queued'], 99):>8.2f}{overhead:>14.2f}"
            f"{queued / direct:>7.2f}  <= {AIM_TIME[case['rewards']]}"
        )
    print(f"{label + ': Redis bytes per step':<34}{'samples JSON':>15}{'in':>18}{'out':>18}{'in + out':>18}")
    for name, case in report.items():
        size = pct(case["json"], 50)
        cells = [pct(case["in"], 50), pct(case["out"], 50)]
        cells.append(sum(cells))
        print(
            f"{name:<34}{size / 1024:>11.1f} KiB"
            + "".join(f"{b / 1024:>10.1f} ({b / size:>4.2f}x)" for b in cells)
            + f"  aim in <= {AIM_BYTES}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--baseline", metavar="CHECKOUT", help="also run the same under that checkout")
    parser.add_argument(
        "--rounds", type=int, default=1, help="with --baseline: alternate the two this many times"
    )
    parser.add_argument("--json-out", help=argparse.SUPPRESS)  # how a baseline run hands its figures back
    args = parser.parse_args()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(measure(args)))
        return
    sides = {"this": measure} | ({"baseline": run_baseline} if args.baseline else {})
    rounds = args.rounds if args.baseline else 1
    reports: dict[str, dict[str, dict[str, Any]]] = {}
    for n in range(rounds):  # each round its own services; which side goes first alternates
        for label in list(sides)[:: 1 if n % 2 == 0 else -1]:
            for name, case in sides[label](args).items():
                merged = reports.setdefault(label, {}).setdefault(name, {"rewards": case["rewards"]})
                for key in ("direct", "queued", "in", "out", "json"):
                    merged.setdefault(key, []).extend(case[key])
    report = reports["this"]
    print(
        f"one step of {BATCH} completions, {args.steps} interleaved steps after {args.warmup} warm-up "
        f"(x {rounds} rounds), audit in {args.store}; ms and bytes are p50 over the steps"
    )
    for label, figures in reports.items():
        show(label, figures)
    if args.baseline:
        for name in report:
            this, base = pct(report[name]["queued"], 50), pct(reports["baseline"][name]["queued"], 50)
            print(f"reward_funcs({name}) p50: this / baseline = {this / base:.2f}")


if __name__ == "__main__":
    main()
