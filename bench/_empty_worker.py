"""A worker with rewardq's worker settings that serves one task doing nothing (for queue_overhead.py):
the floor any Celery round trip through the same Redis pays. It keeps Celery's own consumer: rewardq's
refuses every task but ``rewardq.score``.

python bench/_empty_worker.py BROKER_URL POOL
"""

from __future__ import annotations

import sys

from rewardq import Settings
from rewardq.workers.runtime.app import create_app

EMPTY_TASK = "bench.empty"
EMPTY_QUEUE = "bench.empty"


def main() -> None:
    broker, pool = sys.argv[1:3]
    app = create_app(Settings.from_env({}, broker_url=broker))
    app.conf.worker_consumer = "celery.worker.consumer:Consumer"

    @app.task(name=EMPTY_TASK)
    def empty() -> None:
        return None

    app.Worker(
        hostname="empty@%h", queues=[EMPTY_QUEUE], pool_cls=pool, concurrency=1, loglevel="WARNING"
    ).start()


if __name__ == "__main__":
    main()
