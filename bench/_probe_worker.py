"""A `rewardq worker` for `format` (the real launcher: it announces itself, so producers' serving check
accepts it) that also records when each task starts and ends (for queue_breakdown.py).

python bench/_probe_worker.py BROKER_URL DATABASE_URL POOL TIMES_FILE
"""

from __future__ import annotations

import sys
import time
from typing import Any

from celery import signals

from rewardq import Settings
from rewardq.workers.runtime.launcher import WorkerOptions, run_worker


def main() -> None:
    broker, database, pool, times_path = sys.argv[1:5]
    times = open(times_path, "a")  # noqa: SIM115 - lives as long as the worker; its children inherit it

    def prerun(task_id: str, **_: Any) -> None:
        times.write(f"{task_id} start {time.time()}\n")

    def postrun(task_id: str, **_: Any) -> None:
        times.write(f"{task_id} end {time.time()}\n")
        times.flush()

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    settings = Settings.from_env({}, broker_url=broker, database_url=database)
    sys.exit(run_worker(settings, WorkerOptions(["format"], pool=pool, concurrency=1, loglevel="WARNING")))


if __name__ == "__main__":
    main()
