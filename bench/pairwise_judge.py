"""Pairwise judging against pointwise judging on the same groups: what a group costs in requests and time.

A fake OpenAI-compatible judge (tests/fake_openai.py, bench/judge_throughput.py's ``fake_judge``) in a process
of its own answers every request after a fixed 50 ms with unlimited parallelism; its one reply,
``Reward: 7 [[A]]``, is a grade to ``judge`` and a verdict to ``pairwise_judge``. For groups of 4, 8 and 16
completions (64 completions a call, cache off, 64 requests in flight in one process), the call is scored by
``judge`` (one request per completion), ``pairwise_judge`` with ``pairs = "all"`` (n·(n-1) requests a group)
and with ``pairs = "ring:2"`` (2·n·2 while 4 < n), interleaved, median of ``--repeat`` runs. Each row:
requests/s, completions scored/s, requests per completion, and the time per completion against ``judge``'s
(the cost ratio per group).

    .venv/bin/python bench/pairwise_judge.py --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from judge_throughput import fake_judge

from rewardq import Settings
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Reward
from rewardq.workers.rewards.judges.judge import JudgeReward
from rewardq.workers.rewards.judges.options import JudgeOptions
from rewardq.workers.rewards.judges.pairwise import PairwiseJudgeOptions, PairwiseJudgeReward

LATENCY = 0.05
IN_FLIGHT = 64
COMPLETIONS = 64
GROUP_SIZES = (4, 8, 16)
REPLY = "Reward: 7 [[A]]"


def requests_of(kind: str, size: int) -> int:
    """Requests a group of ``size`` costs (the formulas of docs/rewards-judges.md)."""
    if kind == "judge":
        return size
    if kind == "pairwise all":
        return size * (size - 1)
    pairs = min(size * 2, size * (size - 1) // 2)  # ring:2
    return 2 * pairs


def rewards(resources: WorkerResources, url: str) -> dict[str, Reward]:
    common: dict[str, Any] = {"base_url": (url,), "max_concurrency": IN_FLIGHT, "cache": False, "reask": 0}
    made: dict[str, Reward] = {
        "judge": JudgeReward("judge", JudgeOptions(**common)),
        "pairwise all": PairwiseJudgeReward("pw", PairwiseJudgeOptions(**common)),
        "pairwise ring:2": PairwiseJudgeReward("pwr", PairwiseJudgeOptions(**common, pairs="ring:2")),
    }
    for reward in made.values():
        reward.setup(resources)
    return made


def call(size: int, rep: int) -> list[Sample]:
    """64 distinct completions in groups of ``size`` (a prompt per group), new for each run."""
    return [
        Sample(prompt=f"prompt {rep} {size} {i // size}", completion=f"completion {rep} {size} {i}")
        for i in range(COMPLETIONS)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    resources = WorkerResources(Settings.from_env({}))
    seconds: dict[tuple[int, str], list[float]] = {}
    with fake_judge(LATENCY, REPLY) as url:
        made = rewards(resources, url)
        for rep in range(args.repeat):
            for size in GROUP_SIZES:
                samples = call(size, rep)
                for name, reward in made.items():
                    started = time.perf_counter()
                    scores = reward.score(samples)
                    seconds.setdefault((size, name), []).append(time.perf_counter() - started)
                    assert all(s.status == "ok" for s in scores), {s.error for s in scores}
    resources.close()

    print(f"\nfake judge, {LATENCY * 1000:.0f} ms a request, {IN_FLIGHT} in flight,", end=" ")
    print(f"{COMPLETIONS} completions a call, median of {args.repeat} runs")
    print("| group size | kind | requests / completion | requests/s | completions/s | time / judge's |")
    print("|---|---|---|---|---|---|")
    for size in GROUP_SIZES:
        base = statistics.median(seconds[(size, "judge")])
        for name in made:
            wall = statistics.median(seconds[(size, name)])
            per_completion = requests_of(name, size) / size
            requests = per_completion * COMPLETIONS
            print(
                f"| {size} | {name} | {per_completion:g} | {requests / wall:.0f} | {COMPLETIONS / wall:.0f}"
                f" | {wall / base:.1f}x |"
            )


if __name__ == "__main__":
    main()
