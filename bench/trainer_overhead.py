"""Trainer-side cost per training step of 256 completions: rewardq's TRL reward functions (through Redis,
a worker process and the audit write) against calling the same rule rewards in-process, as TRL would
call a local reward function. Each step calls both back to back with TRL's keyword arguments; prints
p50/p99 of each, the per-step overhead (difference) and the ratio.

    .venv/bin/python bench/trainer_overhead.py --steps 200
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _services import postgres_database, redis_server, sqlite_database, workers
from pydantic import TypeAdapter

from rewardq import RewardClient, Settings
from rewardq.integrations.trl import trl_rows
from rewardq.samples import to_samples
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward
from rewardq.workers.rewards.rules.format import FormatReward
from rewardq.workers.rewards.rules.repetition import RepetitionReward

BATCH = 256
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="postgres")
    args = parser.parse_args()

    cases: dict[str, tuple[list[str], list[Reward]]] = {
        "reward_func('format')": (["format"], [FormatReward("format", FormatReward.Options())]),
        "reward_funcs(format, repetition)": (
            ["format", "repetition"],
            [
                FormatReward("format", FormatReward.Options()),
                RepetitionReward("repetition", RepetitionReward.Options()),
            ],
        ),
    }
    report: list[tuple[str, list[float], list[float], list[float]]] = []
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(redis_server())
        database = stack.enter_context(postgres_database() if args.store == "postgres" else sqlite_database())
        worker_args = ("--rewards", "format,repetition", "--concurrency", "2", "--loglevel", "WARNING")
        stack.enter_context(workers(1, broker, database, *worker_args))
        client = stack.enter_context(
            RewardClient(Settings.from_env({}, broker_url=broker, database_url=database))
        )
        for name, (rewards, scorers) in cases.items():
            funcs = (
                [client.reward_func(rewards, run_id="bench")]
                if len(rewards) == 1
                else client.reward_funcs(rewards, run_id="bench")
            )
            local = in_process(scorers)
            direct_ms: list[float] = []
            queued_ms: list[float] = []
            for step in range(args.warmup + args.steps):
                kwargs = trl_kwargs(step)
                t0 = time.perf_counter()
                expected = local(**kwargs)
                t1 = time.perf_counter()
                got = [func(**kwargs) for func in funcs]
                t2 = time.perf_counter()
                assert got == expected, "rewardq's values equal the in-process ones"
                if step >= args.warmup:
                    direct_ms.append((t1 - t0) * 1000)
                    queued_ms.append((t2 - t1) * 1000)
            report.append(
                (name, direct_ms, queued_ms, [q - d for q, d in zip(queued_ms, direct_ms, strict=True)])
            )

    print(f"one step of {BATCH} completions, {args.steps} interleaved steps, audit in {args.store}, in ms")
    header = ("in-process p50", 15), ("rewardq p50", 12), ("p99", 8), ("overhead p50", 14), ("ratio", 7)
    print(f"{'TRL reward function(s)':<34}" + "".join(f"{title:>{width}}" for title, width in header))
    for name, direct, queued, overhead in report:
        print(
            f"{name:<34}{pct(direct, 50):>15.2f}{pct(queued, 50):>12.2f}{pct(queued, 99):>8.2f}"
            f"{pct(overhead, 50):>14.2f}{pct(queued, 50) / pct(direct, 50):>7.2f}"
        )


if __name__ == "__main__":
    main()
