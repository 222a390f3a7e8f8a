"""local_judge: samples/s of the worker's batched generation against one-at-a-time generation.

Both sides are the ``local_judge`` reward's own scoring path on the same judge prompts, in-process, on
the CPU with the tiny random Qwen2 of ``tests/tinymodels.py`` (fp32): "batched" with the worker's
length-sorted, left-padded ``generate`` calls (``--batch-size`` rows each), "one at a time" with
``batch_size = 1``, one ``generate`` per sample as an in-trainer judge loop does. The random judge never
stops early, so every reply is ``--max-new-tokens`` long on both sides. Prompt lengths are long-tailed
(most completions short, a few long). The two run alternately, ``--rounds`` times; prints the median
samples/s of each and their ratio.

    .venv/bin/python bench/local_judge.py --samples 64 --max-new-tokens 32 --batch-size 16 --rounds 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.judges.local_judge import LocalJudgeReward

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "answer",
    "is",
    "two",
    "plus",
    "three",
    "makes",
    "five",
    "so",
    "the",
    "final",
    "result",
    "holds",
]


def long_tailed_samples(count: int, seed: int = 0) -> list[Sample]:
    """Completions of 4-40 words, a tenth of them 150-300 words."""
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        words = rng.randint(150, 300) if rng.random() < 0.1 else rng.randint(4, 40)
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        samples.append(
            Sample(prompt=f"Question {i}: what is 2 + 3?", completion=text, columns={"reference": "5"})
        )
    return samples


def samples_per_second(reward: LocalJudgeReward, samples: list[Sample]) -> float:
    started = time.perf_counter()
    scores = reward.score(samples)
    elapsed = time.perf_counter() - started
    if len(scores) != len(samples):
        raise RuntimeError(f"{len(scores)} scores for {len(samples)} samples")
    return len(samples) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # tests/tinymodels.py builds the judge
    from tests.tinymodels import build_causal_lm

    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_causal_lm(Path(tmp) / "judge"))
        resources = WorkerResources(Settings.from_env({}))
        common = {"model": model, "max_new_tokens": args.max_new_tokens, "dtype": "float32"}
        batched = LocalJudgeReward("batched", LocalJudgeReward.Options(batch_size=args.batch_size, **common))
        single = LocalJudgeReward("single", LocalJudgeReward.Options(batch_size=1, **common))
        batched.setup(resources)
        single.setup(resources)
        samples = long_tailed_samples(args.samples)
        batched.score(samples[:4])  # warm-up
        rates: dict[str, list[float]] = {"batched": [], "one at a time": []}
        for _ in range(args.rounds):
            rates["batched"].append(samples_per_second(batched, samples))
            rates["one at a time"].append(samples_per_second(single, samples))

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"{args.samples} samples, max_new_tokens={args.max_new_tokens}, batch_size={args.batch_size}, "
        f"{args.rounds} rounds (median samples/s)"
    )
    for name, value in median.items():
        print(f"  {name:<14} {value:8.1f} samples/s")
    print(f"  ratio batched / one at a time: {median['batched'] / median['one at a time']:.2f}x")


if __name__ == "__main__":
    main()
