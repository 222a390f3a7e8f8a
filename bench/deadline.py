"""The deadline's precision: how long after a reward's ``timeout`` its ``timeout`` answer reaches the client,
per pool (prefork, solo, threads workers and the embedded worker).

A ``function`` reward (TRL convention, timeout 2 s) sleeps forever on a completion containing HANG. Each
iteration sends a 1-sample chunk that hangs (the child is stopped at the deadline) and a 2-sample chunk,
one hanging (the whole-chunk call is stopped at half the deadline, then each sample is called alone
until it). A model stand-in served in the worker process (the watchdog; solo, threads, embedded) sleeps
3 s on a 1-sample chunk with timeout 2 s. Printed: the time from submit to the answer minus the timeout,
p50 and max in ms (an upper bound: it includes the queue round trip, a few ms). Aim: at most 1000 ms.
The cases run one after the other, each its iterations in a row: in the embedded worker a task that
follows a coalesced (model) task is picked up about 2 s late, on main too, which is not the deadline's.

    .venv/bin/python bench/deadline.py [--iterations 5]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _services import redis_server, sqlite_database, workers

from rewardq import RewardClient, Settings

TIMEOUT_S = 2.0
AIM_MS = 1000.0
HANGS = """
import threading


def score(completions, **kwargs):
    for completion in completions:
        if "HANG" in completion:
            threading.Event().wait()
    return [1.0 for _ in completions]
"""
SLOW_MODEL = """
import time

from rewardq.workers.rewards.base import Reward, Score


class SlowModel(Reward):
    kind = "slow_model"
    holds_model = True

    def score(self, samples):
        time.sleep(3.0)
        return [Score.ok(1.0) for _ in samples]


def register(kinds):
    kinds.add("slow_model", SlowModel)
"""
CASES = {
    "child, 1 sample": ("hangs", [{"completion": "HANG"}]),
    "child, 2 samples": ("hangs", [{"completion": "HANG"}, {"completion": "fine"}]),
    "watchdog, 1 sample": ("slow_model", [{"completion": "fine"}]),
}


def rewards_file(directory: Path) -> Path:
    (directory / "hangs.py").write_text(HANGS)
    (directory / "slow_model.py").write_text(SLOW_MODEL)
    rewards = directory / "rewards.toml"
    rewards.write_text(
        'plugins = ["slow_model.py"]\n'
        '[rewards.hangs]\nkind = "function"\nfunction = "hangs.py:score"\nconvention = "trl"\n'
        f"timeout = {TIMEOUT_S}\n"
        f'[rewards.slow_model]\nkind = "slow_model"\ntimeout = {TIMEOUT_S}\n'
    )
    return rewards


@contextlib.contextmanager
def client_for(pool: str, rewards: Path) -> Iterator[tuple[RewardClient, list[str]]]:
    """A client of a worker of ``pool`` ("embedded": the in-process one) and the rewards it serves."""
    served = ["hangs"] if pool == "prefork" else ["hangs", "slow_model"]
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(sqlite_database())
        if pool == "embedded":
            settings = Settings.from_env({}, database_url=database, rewards=rewards)
        else:
            broker = stack.enter_context(redis_server())
            args = ["--rewards", ",".join(served), "--pool", pool, "--config", str(rewards)]
            args += ["--concurrency", "1"]
            stack.enter_context(workers(1, broker, database, *args, "--loglevel", "ERROR"))
            settings = Settings.from_env({}, broker_url=broker, database_url=database, rewards=rewards)
        yield stack.enter_context(RewardClient(settings)), served


def measure(pool: str, rewards: Path, iterations: int) -> dict[str, list[float]]:
    """Per case, the ms from the deadline to the answer, one figure per iteration."""
    late: dict[str, list[float]] = {}
    with client_for(pool, rewards) as (client, served):
        for case, (reward, samples) in CASES.items():  # a case at a time: see the module's docstring
            if reward not in served:
                continue
            for i in range(iterations + 1):  # the first is a warm-up (children start, imports)
                if reward == "slow_model":
                    time.sleep(3.0)  # the last call ends (a chunk would wait for it) and the worker idles
                started = time.perf_counter()
                result = client.score(samples, reward, run_id="bench-deadline", step=i, timeout=60)
                elapsed = time.perf_counter() - started
                assert result.statuses[reward][0] == "timeout", result.statuses
                if i:
                    late.setdefault(case, []).append((elapsed - TIMEOUT_S) * 1000)
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--pools", default="prefork,solo,threads,embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rewards = rewards_file(Path(d))
        figures = {pool: measure(pool, rewards, args.iterations) for pool in args.pools.split(",")}
    print(f"ms from the deadline ({TIMEOUT_S:g} s) to the `timeout` answer, {args.iterations} iterations")
    print(f"{'pool':<10}{'case':<22}{'p50':>10}{'max':>10}{f'aim <= {AIM_MS:g}':>14}")
    for pool, cases in figures.items():
        for case, values in cases.items():
            ordered = sorted(values)
            p50, worst = ordered[len(ordered) // 2], ordered[-1]
            print(f"{pool:<10}{case:<22}{p50:>10.1f}{worst:>10.1f}{'yes' if worst <= AIM_MS else 'NO':>14}")


if __name__ == "__main__":
    main()
