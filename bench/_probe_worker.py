"""A `format` worker that also records when each task starts and ends (for queue_breakdown.py).

python bench/_probe_worker.py BROKER_URL DATABASE_URL POOL TIMES_FILE
"""

from __future__ import annotations

import sys
import time
from typing import Any

from celery import signals

from rewardq import Settings
from rewardq.storage import upgrade
from rewardq.wire.schema import queue_for
from rewardq.workers.runtime.app import create_app


def main() -> None:
    broker, database, pool, times_path = sys.argv[1:5]
    upgrade(database)
    app = create_app(Settings.from_env({}, broker_url=broker, database_url=database))
    times = open(times_path, "a")  # noqa: SIM115 - lives as long as the worker

    def prerun(task_id: str, **_: Any) -> None:
        times.write(f"{task_id} start {time.time()}\n")

    def postrun(task_id: str, **_: Any) -> None:
        times.write(f"{task_id} end {time.time()}\n")
        times.flush()

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    app.Worker(
        hostname="probe@%h", queues=[queue_for("format")], pool_cls=pool, concurrency=1, loglevel="WARNING"
    ).start()


if __name__ == "__main__":
    main()
