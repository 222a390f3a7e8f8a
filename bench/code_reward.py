"""The ``code`` reward: programs/s through the reward (each case a fresh bubblewrap sandbox) against the same
programs run with a bare ``subprocess.run`` and no isolation, side by side in one run.

Both sides run the same scripts (prime_code's prelude, then the program) with the same interpreter and
flags on the same inputs, ``--parallel`` at a time, and compare outputs with the same rules; the bare side
is what a scorer without a sandbox costs. The programs that finish are half correct, half wrong; the
others never finish (killed at ``--time-limit``) and are timed apart, since a time-out costs the time
limit on both sides. The two sides run alternately, ``--rounds`` times; prints the median programs/s of
each and their ratio, and the load average.

    .venv/bin/python bench/code_reward.py --programs 60 --timeouts 6 --cases 3 --parallel 2 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from rewardq import Settings
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.process.sandbox import PYTHON_FLAGS, python_paths
from rewardq.workers.rewards.code.cases import read_tests
from rewardq.workers.rewards.code.compare import stdout_matches
from rewardq.workers.rewards.code.harness import stdin_script
from rewardq.workers.rewards.code.programs import extract_program
from rewardq.workers.rewards.code.reward import CodeReward

RIGHT = "```python\nn = int(input())\nprint(sum(i * i for i in range(n)))\n```"
WRONG = "```python\nn = int(input())\nprint(sum(range(n)))\n```"
SLOW = "```python\nwhile True:\n    pass\n```"


def problem(cases: int) -> dict[str, list[str]]:
    ns = [1000 * (k + 1) for k in range(cases)]
    return {"inputs": [f"{n}\n" for n in ns], "outputs": [f"{sum(i * i for i in range(n))}\n" for n in ns]}


def bare(samples: list[Sample], parallel: int, time_limit: float) -> list[float]:
    """The same programs with ``subprocess.run`` and no isolation: the share of cases passed per sample."""
    python = python_paths()[0]

    def case(program: str, stdin: str, expected: str) -> bool:
        try:
            run = subprocess.run(
                [python, *PYTHON_FLAGS, "-c", stdin_script(program, True)],
                input=stdin.encode(),
                capture_output=True,
                timeout=time_limit,
            )
        except subprocess.TimeoutExpired:
            return False
        return run.returncode == 0 and stdout_matches(run.stdout.decode(errors="replace"), expected)

    jobs = []
    with ThreadPoolExecutor(parallel) as pool:
        for sample in samples:
            tests = read_tests(sample.columns["tests"], "tests")
            program = extract_program(sample.completion_text, "python")
            assert not isinstance(tests, str) and program is not None
            jobs.append([pool.submit(case, program, c.input, c.expected) for c in tests.cases])
        return [sum(f.result() for f in futures) / len(futures) for futures in jobs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=60, help="programs that finish, per round")
    parser.add_argument(
        "--timeouts", type=int, default=None, help="programs that never finish (default: half)"
    )
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--time-limit", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tests = problem(args.cases)
    finishing = [
        Sample(completion=(RIGHT, WRONG)[i % 2], columns={"tests": tests}) for i in range(args.programs)
    ]
    slow = [Sample(completion=SLOW, columns={"tests": tests})] * (args.timeouts or args.programs // 2)
    resources = WorkerResources(Settings.from_env({}))
    reward = CodeReward("code", CodeReward.Options(time_limit=args.time_limit, parallel=args.parallel))
    reward.setup(resources)
    rates: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for label, samples in (("finish", finishing), ("time out", slow)):
            for side in ("rewardq", "bare"):
                start = time.perf_counter()
                if side == "rewardq":
                    values = [score.value for score in reward.score(samples)]
                else:
                    values = list(bare(samples, args.parallel, args.time_limit))
                seconds = time.perf_counter() - start
                rates.setdefault(f"{label}/{side}", []).append(len(samples) / seconds)
                if label == "finish":
                    assert values == [(1.0, 0.0)[i % 2] for i in range(len(samples))], values
    reward.close()
    resources.close()
    print(
        f"{args.programs} finishing + {len(slow)} timing-out programs x {args.cases} cases,"
        f" parallel {args.parallel}"
    )
    for label in ("finish", "time out"):
        ours, theirs = (statistics.median(rates[f"{label}/{side}"]) for side in ("rewardq", "bare"))
        print(
            f"{label:>9}: rewardq {ours:7.2f} programs/s  bare subprocess {theirs:7.2f} programs/s"
            f"  ratio {ours / theirs:.2f}"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
