"""rewardq as TRL reward functions (``GRPOTrainer(reward_funcs=...)``).

TRL calls each reward function by keyword with the batch: ``prompts``, ``completions`` (strings, or
message lists for conversational data), ``completion_ids``, ``trainer_state``, ``log_extra``,
``log_metric`` and one list per dataset column; it runs async reward functions concurrently and treats
``None`` as "no reward" (NaN, left out of the weighted sum).

- :func:`total_reward` (``RewardClient.reward_func``): one callable, the weighted total of the rewards.
- :func:`per_reward` (``RewardClient.reward_funcs``): one callable per reward, named after it, so that
  TRL logs each one and applies its ``reward_weights``; they share one submission per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, Unpack

from rewardq.catalog import check_weights
from rewardq.client import RewardClient
from rewardq.handles import DeadlinePolicy
from rewardq.integrations.batches import (
    SharedBatches,
    batch_key,
    check_lengths,
    json_columns,
    metrics,
    step_of,
)
from rewardq.results import ScoreResult

log = logging.getLogger(__name__)

# Keyword arguments of TRL's that are not dataset columns.
NOT_COLUMNS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")

RewardFunc = Callable[..., Any]


def trl_rows(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """TRL's keyword arguments as rewardq rows: prompt, completion, completion_ids and the JSON columns."""
    completions = kwargs["completions"]
    size = len(completions)
    prompts = kwargs.get("prompts") or [None] * size
    ids = kwargs.get("completion_ids")
    columns = json_columns(kwargs, size, NOT_COLUMNS)
    rows = []
    for i, completion in enumerate(completions):
        row: dict[str, Any] = {"prompt": prompts[i], "completion": completion}
        if ids is not None:
            row["completion_ids"] = list(ids[i])
        row.update({name: values[i] for name, values in columns.items()})
        rows.append(row)
    return rows


class _TrlBatches:
    """The TRL side of :class:`SharedBatches`: keys, rows and metrics from TRL's keyword arguments."""

    def __init__(self, batches: SharedBatches) -> None:
        self.batches = batches

    def _args(
        self, kwargs: Mapping[str, Any]
    ) -> tuple[bytes, Callable[[], list[dict[str, Any]]], int | None]:
        check_lengths(
            kwargs["completions"],
            {"prompts": kwargs.get("prompts"), "completion_ids": kwargs.get("completion_ids")},
        )
        step = step_of(kwargs.get("trainer_state"))
        key = batch_key(step, kwargs.get("prompts"), kwargs["completions"])
        return key, lambda: trl_rows(kwargs), step

    @staticmethod
    def _report(kwargs: Mapping[str, Any]) -> Callable[[ScoreResult], None] | None:
        log_metric = kwargs.get("log_metric")
        if not callable(log_metric):
            return None

        def report(result: ScoreResult) -> None:
            for name, value in metrics(result).items():
                log_metric(name, value)

        return report

    def score(self, kwargs: Mapping[str, Any]) -> ScoreResult:
        return self.batches.score(*self._args(kwargs), self._report(kwargs))

    async def ascore(self, kwargs: Mapping[str, Any]) -> ScoreResult:
        return await self.batches.ascore(*self._args(kwargs), self._report(kwargs))


def _named(func: RewardFunc, name: str) -> RewardFunc:
    func.__name__ = func.__qualname__ = name
    return func


class BatchOptions(TypedDict, total=False):
    """The keyword options of :class:`SharedBatches`, all optional: ``run_id`` (default REWARDQ_RUN_ID),
    ``timeout`` (seconds a batch waits for its scores; default REWARDQ_TIMEOUT), ``deadline`` and
    ``on_deadline`` (as for ``RewardClient.submit``)."""

    run_id: str | None
    timeout: float | None
    deadline: float | None
    on_deadline: DeadlinePolicy


class TrlOptions(BatchOptions, total=False):
    """The keyword options of the TRL reward functions: :class:`BatchOptions` and ``asynchronous`` (async
    callables, which TRL runs concurrently; default False)."""

    asynchronous: bool


def total_reward(
    client: RewardClient,
    rewards: Mapping[str, float] | Sequence[str] | str,
    *,
    name: str = "rewardq",
    asynchronous: bool = False,
    **options: Unpack[BatchOptions],
) -> RewardFunc:
    """One TRL reward function returning each sample's weighted total (None where no reward has a value)."""
    batches = _TrlBatches(SharedBatches(client, _weights(client, rewards), **options))
    if asynchronous:

        async def total_async(**kwargs: Any) -> list[float | None]:
            return (await batches.ascore(kwargs)).totals

        return _named(total_async, name)

    def total(**kwargs: Any) -> list[float | None]:
        return batches.score(kwargs).totals

    return _named(total, name)


def per_reward(
    client: RewardClient,
    rewards: Mapping[str, float] | Sequence[str] | str,
    *,
    asynchronous: bool = False,
    **options: Unpack[BatchOptions],
) -> list[RewardFunc]:
    """One TRL reward function per reward, named after it; values are None unless the status is ``ok``.

    Each callable returns its reward's raw value, so weights given here are not applied: TRL applies
    ``GRPOConfig(reward_weights=[...])``, in this order. Weights other than 1 are warned about, naming
    the ``reward_weights`` to give TRL (pass the names alone to say nothing).
    """
    weights = _weights(client, rewards)
    if any(w != 1.0 for w in weights.values()):
        log.warning(
            "reward_funcs returns raw values, the weights %s are not applied: give them to TRL as "
            "GRPOConfig(reward_weights=%s)",
            weights,
            list(weights.values()),
        )
    batches = _TrlBatches(SharedBatches(client, weights, readers=len(weights), **options))
    return [_one(batches, name, asynchronous) for name in weights]


def _one(batches: _TrlBatches, name: str, asynchronous: bool) -> RewardFunc:
    if asynchronous:

        async def one_async(**kwargs: Any) -> list[float | None]:
            return (await batches.ascore(kwargs)).rewards[name]

        return _named(one_async, name)

    def one(**kwargs: Any) -> list[float | None]:
        return batches.score(kwargs).rewards[name]

    return _named(one, name)


def _weights(client: RewardClient, rewards: Mapping[str, float] | Sequence[str] | str) -> dict[str, float]:
    return check_weights(rewards, client.known_rewards)
