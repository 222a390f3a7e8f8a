"""The native API's request and answer bodies (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rewardq.handles import DeadlinePolicy
from rewardq.results import ScoreResult
from rewardq.wire.schema import Status

Timeout = Field(
    default=None,
    gt=0,
    allow_inf_nan=False,
    description="Seconds to wait (default REWARDQ_TIMEOUT, at most the gateway's max_timeout).",
)


class BatchRequest(BaseModel):
    """A batch to score: the rows as ``RewardClient.submit`` takes them (TRL or ms-swift shapes)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: str = Field(description="The run the scores are recorded under (the key must allow it).")
    step: int | None = Field(default=None, description="The training step.")
    rewards: dict[str, float] | list[str] = Field(
        description="Reward names, or names with their weights (weight 0: score and log, do not count)."
    )
    samples: list[dict[str, Any]] = Field(
        description="TRL rows (`prompt`, `completion`, columns) or ms-swift rows (`messages`, columns)."
    )


class ScoreRequest(BatchRequest):
    """``RewardClient.score``: submit and wait."""

    timeout: float | None = Timeout


class SubmitRequest(BatchRequest):
    """``RewardClient.submit``: enqueue and answer at once with the batch id."""

    deadline: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Seconds from now by which to score it."
    )
    on_deadline: DeadlinePolicy = Field(
        default="partial",
        description="What a collect does with scores still missing at the deadline: `partial` (status "
        "`timeout`), `fail` (504, the batch is kept) or `wait` (keep waiting up to the collect's timeout).",
    )


class CollectRequest(BaseModel):
    """``ScoreHandle.get``: wait for the batch, then hand it over (it is gone from the gateway after)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    timeout: float | None = Timeout


class ScoreAnswer(BaseModel):
    """A :class:`~rewardq.ScoreResult`: per reward, each sample's value (null unless its status is `ok`),
    status and error text (by sample index), and each sample's weighted total (null without a value)."""

    batch_id: str
    weights: dict[str, float]
    rewards: dict[str, list[float | None]]
    statuses: dict[str, list[Status]]
    errors: dict[str, dict[int, str]]
    totals: list[float | None]

    @classmethod
    def of(cls, result: ScoreResult) -> ScoreAnswer:
        return cls(
            batch_id=result.batch_id,
            weights=result.weights,
            rewards=result.rewards,
            statuses=result.statuses,
            errors=result.errors,
            totals=result.totals,
        )


class Submitted(BaseModel):
    """A submitted batch: collect it by ``batch_id`` (only with the key that submitted it)."""

    batch_id: str
    size: int = Field(description="Samples in the batch.")
    weights: dict[str, float]
    deadline_at: float | None = Field(description="The deadline as a Unix time, if one was set.")


class BatchState(BaseModel):
    """A batch as it stands, without waiting and without collecting it (``ScoreHandle.partial``):
    scores not back yet have status `timeout` and the error "not ready yet"."""

    ready: bool = Field(description="True when every score is back.")
    result: ScoreAnswer


class Rewards(BaseModel):
    """The rewards this key may call that live workers serve, with the scorer fingerprint each is
    served with (null: a worker announces none)."""

    rewards: dict[str, str | None]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """Ready when the broker answers and a live worker serves each reward the gateway needs."""

    ready: bool
    problems: list[str]
