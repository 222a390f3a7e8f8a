"""Where a worker's task body spends its time: ``score_payload`` on a 64-sample `format` chunk, in-process,
audit in PostgreSQL, under cProfile; prints ms per task and the shares of the audit insert, its commit and
the rest (validation, scoring, hashing, building the rows).

    .venv/bin/python bench/task_body.py --iterations 300
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import uuid
from typing import Any

from _services import postgres_database

from rewardq import Settings
from rewardq.samples import to_samples
from rewardq.storage import upgrade
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.task import score_payload


def cumulative(stats: pstats.Stats, file_suffix: str, function: str) -> float:
    """Seconds spent in (and under) the function ``function`` of a file ending with ``file_suffix``."""
    entries: Any = stats.stats  # type: ignore[attr-defined]
    return sum(
        entry[3]
        for (filename, _, name), entry in entries.items()
        if filename.endswith(file_suffix) and name == function
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    rows = [
        {"prompt": f"q{i}", "completion": f"<think>step {i}</think><answer>{i}</answer>"} for i in range(64)
    ]
    wire = to_samples(rows, max_record_bytes=1 << 20)
    with postgres_database() as url:
        upgrade(url)
        runtime = WorkerRuntime(Settings.from_env({}, database_url=url), RewardsConfig.load(None))

        def payload(step: int) -> dict[str, Any]:
            batch = uuid.uuid4().hex
            return {
                "v": 1,
                "batch_id": batch,
                "run_id": "b",
                "step": step,
                "reward": "format",
                "samples": wire,
            }

        for step in range(30):
            score_payload(runtime, payload(step))
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for step in range(args.iterations):
            score_payload(runtime, payload(step))
        profile.disable()
        total = time.perf_counter() - started
        runtime.close()
    stats = pstats.Stats(profile)
    insert = cumulative(stats, "storage/writer.py", "write_scores")
    commit = cumulative(stats, "sqlalchemy/engine/base.py", "_commit_impl")
    per_task = total / args.iterations * 1000
    print(f"task body: {per_task:.2f} ms per 64-sample task (under cProfile), audit in PostgreSQL")
    for name, seconds in (
        ("audit insert", insert),
        ("audit commit", commit),
        ("the rest", total - insert - commit),
    ):
        print(f"  {name:<14}{seconds / args.iterations * 1000:>8.2f} ms  {seconds / total:>6.1%}")


if __name__ == "__main__":
    main()
