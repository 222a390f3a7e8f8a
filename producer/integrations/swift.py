"""rewardq as an ms-swift reward function (``--external_plugins plugin.py --reward_funcs rq``).

In the plugin file::

    from swift.rewards import orms
    from rewardq.integrations.swift import orm

    orms["rq"] = orm(rewards={"accuracy": 1.0, "format": 0.5}, run_id="grpo-7")

ms-swift builds the class once (``orms[name](args=...)``) and calls it with the completions (plain
strings) and the batch's columns as keyword lists (``messages`` with the completion last, ``solution``
…, ``trainer_state``). It returns each sample's weighted total; ``None`` where no reward has a value,
which ms-swift turns into NaN and leaves out of its weighted sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rewardq.catalog import check_weights
from rewardq.client import RewardClient
from rewardq.handles import DeadlinePolicy
from rewardq.integrations.batches import (
    SharedBatches,
    batch_key,
    check_lengths,
    json_columns,
    step_of,
)

# Keyword arguments of ms-swift's that are not per-sample columns sent as such.
NOT_COLUMNS = ("messages", "trainer_state", "completions", "trajectory_inputs")


def swift_rows(completions: Sequence[Any], kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """ms-swift's arguments as rewardq rows: the prompt (``messages`` before the completion), the
    completion and the JSON columns."""
    size = len(completions)
    messages = kwargs.get("messages") or [None] * size
    columns = json_columns(kwargs, size, NOT_COLUMNS)
    rows = []
    for i, completion in enumerate(completions):
        turns = messages[i]
        if isinstance(turns, list) and turns and isinstance(turns[-1], Mapping):
            turns = turns[:-1] if turns[-1].get("role") == "assistant" else turns
        row: dict[str, Any] = {"prompt": turns or None, "completion": completion}
        row.update({name: values[i] for name, values in columns.items()})
        rows.append(row)
    return rows


def orm(
    rewards: Mapping[str, float] | Sequence[str] | str,
    *,
    run_id: str | None = None,
    timeout: float | None = None,
    deadline: float | None = None,
    on_deadline: DeadlinePolicy = "partial",
    name: str = "rewardq",
) -> type:
    """An ms-swift ORM class whose instances score through rewardq (settings from REWARDQ_*).

    ms-swift logs the reward under the class's name (``name``, default ``rewardq``).
    """
    from swift.rewards import ORM

    def __init__(self: Any, args: Any = None, **kwargs: Any) -> None:
        ORM.__init__(self, args, **kwargs)
        client = RewardClient()
        self.batches = SharedBatches(
            client,
            check_weights(rewards, client.known_rewards),
            run_id=run_id,
            timeout=timeout,
            deadline=deadline,
            on_deadline=on_deadline,
        )

    def __call__(self: Any, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        check_lengths(completions, {"messages": kwargs.get("messages")})
        step = step_of(kwargs.get("trainer_state"))
        key = batch_key(step, kwargs.get("messages"), completions)
        return self.batches.score(key, lambda: swift_rows(completions, kwargs), step).totals

    return type(name, (ORM,), {"__init__": __init__, "__call__": __call__, "__module__": __name__})
