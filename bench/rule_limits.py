"""Every rule reward on one record at the size limit (1 MiB as JSON), in hostile shapes: seconds per
sample, and each as a multiple of decoding that record's JSON (a yardstick measured in the same run,
since the machine's speed varies).

    .venv/bin/python bench/rule_limits.py [--size 1048576] [--rewards accuracy,format]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson

from rewardq import Settings
from rewardq.catalog import BUILTIN_REWARDS
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.config import RewardsConfig

# Each shape: a completion of about n characters built to defeat a rule reward's parsing.
SHAPES: dict[str, Callable[[int], str]] = {
    "plain": lambda n: "a" * n,
    "think_answer": lambda n: "<think>" + "</think>\n<answer>" * (n // 17),
    "answers": lambda n: "<answer>1</answer>" * (n // 18),
    "boxed_nested": lambda n: "\\boxed{" * (n // 16) + "1" + "}" * (n // 16),
    "boxed_many": lambda n: "\\boxed{1} " * (n // 10),
    "latex_frac": lambda n: "\\frac{1}{2}+" * (n // 12),
    "words": lambda n: " ".join(f"w{i % 997}" for i in range(n // 5)),
    "repeated_ngram": lambda n: "the cat sat on the mat " * (n // 23),
    "newlines": lambda n: "\n" * n,
    "unicode": lambda n: "é∑" * (n // 5),
}


def record(completion: str) -> dict[str, object]:
    return {
        "prompt": "What is 1+1?",
        "completion": completion,
        "columns": {"solution": "$2$", "reference": "2", "completion_ids": list(range(512))},
    }


def fit(shape: Callable[[int], str], size: int) -> dict[str, object]:
    """The shape's record, as close to ``size`` bytes of JSON as it gets without going over."""
    n = size
    while True:
        rec = record(shape(n))
        over = len(orjson.dumps(rec)) - size
        if over <= 0:
            return rec
        n -= max(over // 2, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--rewards", default=",".join(BUILTIN_REWARDS))
    args = parser.parse_args()
    settings = Settings.from_env({})
    config = RewardsConfig.load(None)
    resources = WorkerResources(settings)
    names = args.rewards.split(",")
    rewards = {name: config.build(name) for name in names}
    for reward in rewards.values():
        reward.setup(resources)
    print(f"record size {args.size} bytes; seconds per sample (x JSON decode of the record)")
    print(f"{'shape':<16}{'decode s':>10}" + "".join(f"{n:>20}" for n in names))
    worst = dict.fromkeys(names, 0.0)
    for shape_name, shape in SHAPES.items():
        rec = fit(shape, args.size)
        raw = orjson.dumps(rec)
        started = time.perf_counter()
        sample = Sample.model_validate(orjson.loads(raw))
        decode = time.perf_counter() - started
        cells = []
        for name, reward in rewards.items():
            started = time.perf_counter()
            [score] = reward.score([sample])
            took = time.perf_counter() - started
            worst[name] = max(worst[name], took)
            cells.append(f"{took:8.3f} ({took / decode:5.0f}x) {score.status[:2]}")
        print(f"{shape_name:<16}{decode:>10.4f}" + "".join(f"{c:>20}" for c in cells))
    print("worst: " + ", ".join(f"{n} {s:.3f}s" for n, s in worst.items()))
    for reward in rewards.values():
        reward.close()
    resources.close()


if __name__ == "__main__":
    main()
