"""Values the audit store cannot hold are refused at the producer, naming the field, before any enqueue."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from rewardq import InvalidInputError, RewardClient, Settings
from rewardq.wire.schema import MAX_STEP, TaskEnvelope

ROWS = [{"prompt": "q", "completion": "a"}, {"prompt": "q", "completion": "b"}]


@pytest.mark.parametrize(
    ("rows", "request_", "field", "message"),
    [
        (ROWS, {"run_id": "run\x00x"}, "run_id", "must not contain NUL characters"),
        (ROWS, {"run_id": "run\ud800"}, "run_id", "lone surrogate"),
        (ROWS, {"run_id": "r", "batch_id": "b\udfff"}, "batch_id", "lone surrogate"),
        (ROWS, {"run_id": "r", "step": MAX_STEP + 1}, "step", "from 0 to 2147483647"),
        (ROWS, {"run_id": "r", "step": -1}, "step", "from 0 to 2147483647"),
        (ROWS, {"run_id": "r", "batch_id": "b\x00"}, "batch_id", "must not contain NUL"),
        (ROWS, {"run_id": "r", "batch_id": "b" * 65}, "batch_id", "1 to 64 characters"),
        (
            [*ROWS, {"completion": "c", "id": "x" * 513}],
            {"run_id": "r"},
            "id",
            "over the audit store's limit",
        ),
        ([*ROWS, {"completion": "c", "sample_id": "a\x00"}], {"run_id": "r"}, "sample_id", "NUL"),
    ],
)
def test_unstorable_values_are_refused_before_anything_is_enqueued(
    redis_server: Any, rows: list[dict[str, Any]], request_: dict[str, Any], field: str, message: str
) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url)
    with RewardClient(settings) as client, pytest.raises(InvalidInputError) as info:
        client.submit(rows, "format", **request_)
    [problem] = info.value.problems
    assert (problem.field, message in problem.message) == (field, True), problem
    assert "nothing was enqueued" in str(info.value)
    assert redis.Redis.from_url(redis_server.url).llen("rewards.format") == 0


def test_the_largest_storable_values_pass() -> None:
    task = TaskEnvelope.model_validate(
        {"batch_id": "b", "run_id": "r" * 200, "step": MAX_STEP, "reward": "format", "samples": [{}]}
    )
    assert task.step == MAX_STEP
    with pytest.raises(ValueError, match="less than or equal to 2147483647"):
        TaskEnvelope.model_validate(
            {"batch_id": "b", "run_id": "r", "step": MAX_STEP + 1, "reward": "f", "samples": [{}]}
        )


def test_weights_are_bounded_so_that_totals_stay_finite() -> None:
    from rewardq.catalog import check_weights
    from rewardq.results import weighted_total

    with pytest.raises(InvalidInputError, match=r"weight must be within ±1e\+06 \(got 1e\+300\)"):
        check_weights({"format": 1e300}, {"format"})
    assert check_weights({"format": -1e6}, {"format"}) == {"format": -1e6}
    assert weighted_total({"a": 1e308, "b": 1e308}, {"a": 1e6, "b": 1.0}) is None
