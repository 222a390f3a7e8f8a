"""``rewardq dlq``: the dead-letter queue — the tasks and messages workers parked, and replaying one."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import orjson
import typer

from rewardq.wire.errors import SettingsError
from rewardq.wire.settings import Settings
from rewardq.workers.cli.common import err, errors, settings
from rewardq.workers.cli.render import Format, render

dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter queue: parked tasks, and replaying them.")


def _broker_settings() -> Settings:
    current = settings()
    if current.embedded:
        raise SettingsError(
            "the dead-letter queue is kept in the broker's Redis: set REWARDQ_BROKER_URL "
            "(an embedded worker keeps its own in its process)"
        )
    return current


@dlq_app.command("list")
@errors
def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help="Every entry, payload included, as JSON.")] = False,
) -> None:
    """The parked tasks: task id, reward, batch, run, reason, deliveries, when parked."""
    from rewardq.workers.process.kv import broker_kv
    from rewardq.workers.runtime.dlq import DeadLetters

    entries = DeadLetters(broker_kv(_broker_settings())).entries()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps([asdict(e) for e in entries], option=orjson.OPT_APPEND_NEWLINE))
        return
    rows = [
        {
            "task id": e.task_id,
            "reward": e.reward,
            "batch": e.batch_id,
            "run": e.run_id,
            "reason": e.reason,
            "deliveries": e.deliveries,
            "parked at": e.parked_at,
        }
        for e in entries
    ]
    render(rows, Format.table, title="dead-letter queue")


@dlq_app.command("replay")
@errors
def dlq_replay(
    task_id: Annotated[str, typer.Argument(help="The parked task's id (see `rewardq dlq list`).")],
) -> None:
    """Send a parked task again, under its own id, to its queue; it leaves the dead-letter queue."""
    from rewardq.workers.runtime.dlq import replay

    done = replay(_broker_settings(), task_id)
    entry = done.entry
    err.print(
        f"replayed {entry.task_id} (reward {entry.reward}, batch {entry.batch_id}) to {entry.queue} "
        f"as task {done.task_id}, batch {done.batch_id}"
    )
