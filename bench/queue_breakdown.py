"""Where a queued round trip's time goes: one 64-sample `format` batch at a time through one worker
(solo, then prefork) writing its audit to PostgreSQL; p50 of each leg, from Celery's task signals.

    .venv/bin/python bench/queue_breakdown.py --iterations 200
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _services import postgres_database, redis_server

from rewardq import RewardClient, Settings
from rewardq.broker import make_app

LEGS = ("submit", "queue to task start", "task body", "result to client", "total")


@contextlib.contextmanager
def probe_worker(broker: str, database: str, pool: str, times_file: Path) -> Iterator[None]:
    """bench/_probe_worker.py, answering pings before the block runs; its whole process group is killed
    after it, whatever happened."""
    probe = Path(__file__).with_name("_probe_worker.py")
    worker = subprocess.Popen(
        [sys.executable, str(probe), broker, database, pool, str(times_file)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    control = make_app(Settings.from_env({}, broker_url=broker))
    try:
        deadline = time.monotonic() + 60
        while not control.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the probe worker did not start (exit code {worker.poll()})")
        yield
    finally:
        control.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def measure(pool: str, iterations: int) -> dict[str, float]:
    rows = [
        {"prompt": f"q{i}", "completion": f"<think>step {i}</think><answer>{i}</answer>"} for i in range(64)
    ]
    with redis_server() as broker, postgres_database() as database, tempfile.TemporaryDirectory() as d:
        times_file = Path(d) / "times.txt"
        times_file.touch()
        with probe_worker(broker, database, pool, times_file):
            marks = {}
            with RewardClient(Settings.from_env({}, broker_url=broker, database_url=database)) as client:
                for _ in range(iterations + 20):
                    t0 = time.time()
                    handle = client.submit(rows, "format", run_id="breakdown")
                    t1 = time.time()
                    handle.get(timeout=30)
                    marks[handle.task_ids[0]] = (t0, t1, time.time())
            time.sleep(0.5)
        events: dict[str, dict[str, float]] = collections.defaultdict(dict)
        for line in times_file.read_text().splitlines():
            task_id, kind, at = line.split()
            events[task_id][kind] = float(at)
    legs: dict[str, list[float]] = {leg: [] for leg in LEGS}
    for task_id, (t0, t1, t4) in list(marks.items())[20:]:
        start, end = events[task_id]["start"], events[task_id]["end"]
        for leg, seconds in zip(LEGS, (t1 - t0, start - t1, end - start, t4 - end, t4 - t0), strict=True):
            legs[leg].append(seconds * 1000)
    return {leg: statistics.median(values) for leg, values in legs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    results = {pool: measure(pool, args.iterations) for pool in ("solo", "prefork")}
    print(f"p50 ms of each leg, {args.iterations} round trips, audit in PostgreSQL")
    print(f"{'leg':<22}" + "".join(f"{pool:>10}" for pool in results))
    for leg in LEGS:
        print(f"{leg:<22}" + "".join(f"{results[pool][leg]:>10.3f}" for pool in results))


if __name__ == "__main__":
    main()
