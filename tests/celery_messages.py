"""Celery protocol 2 task messages as a producer frames them, for the tests that put their own (malformed,
hostile or fuzzed) messages on a queue."""

from __future__ import annotations

from typing import Any

from rewardq.wire.schema import TASK_NAME

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_headers(
    task_id: str, *, task: str = TASK_NAME, argsrepr: str = "(...)", origin: str = "tests"
) -> dict[str, Any]:
    """The headers Celery's protocol 2 gives a task message."""
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": argsrepr,
        "kwargsrepr": "{}",
        "origin": origin,
        "ignore_result": False,
    }


def task_body(payload: Any) -> list[Any]:
    """The body of a task message whose one argument is ``payload``."""
    return [[payload], {}, EMBED]
