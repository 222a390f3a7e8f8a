"""At the worker: a sample the audit store cannot hold fails alone (its chunk's good samples are written),
stored text loses its NUL characters, and a permanent database error is never retried."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from rewardq import Settings
from rewardq.storage import upgrade
from rewardq.wire.schema import TASK_NAME
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.app import create_app
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.task import InvalidTask, score_payload


@pytest.fixture
def runtime(database_url: str) -> Any:
    upgrade(database_url)
    rt = WorkerRuntime(
        Settings.from_env({}, database_url=database_url, store_text=True), RewardsConfig.load(None)
    )
    yield rt
    rt.close()


def payload(samples: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "batch_id": uuid.uuid4().hex,
        "run_id": "t",
        "step": 1,
        "reward": "format",
        "samples": samples,
    } | extra


def rows(runtime: WorkerRuntime, batch: str) -> list[Any]:
    with runtime.engine.connect() as conn:
        query = "SELECT sample_index, status, sample_id, completion_text FROM scores WHERE batch_id = :b"
        return list(conn.execute(sa.text(query + " ORDER BY sample_index"), {"b": batch}))


def test_an_overlong_id_fails_its_sample_only(runtime: WorkerRuntime) -> None:
    good = "<think>a</think><answer>b</answer>"
    p = payload(
        [
            {"completion": good, "columns": {"id": "a"}},
            {"completion": good, "columns": {"id": "x" * 600}},
            {"completion": good, "columns": {"sample_id": "n\x00ul"}},
        ]
    )
    result = score_payload(runtime, p)
    assert result["statuses"] == ["ok", "error", "error"]
    assert (
        result["errors"]["1"]
        == "invalid sample: field 'id': is 600 characters, over the audit store's limit of 512"
    )
    assert "field 'sample_id': must not contain NUL" in result["errors"]["2"]
    assert [(r.status, r.sample_id) for r in rows(runtime, p["batch_id"])] == [
        ("ok", "a"),
        ("error", None),
        ("error", None),
    ]


def test_nul_characters_in_stored_text_are_replaced(runtime: WorkerRuntime) -> None:
    p = payload([{"completion": "a\x00b"}])
    assert score_payload(runtime, p)["statuses"] == ["ok"]
    assert [r.completion_text for r in rows(runtime, p["batch_id"])] == ["a\ufffdb"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"run_id": "a\x00b"}, "run_id: String should match pattern"),
        ({"step": 2**31}, "step: Input should be less"),
    ],
)
def test_an_unstorable_envelope_is_rejected_without_a_write(
    runtime: WorkerRuntime, change: dict, problem: str
) -> None:
    p = payload([{"completion": "a"}], **change)
    with pytest.raises(InvalidTask, match=problem):
        score_payload(runtime, p)
    assert rows(runtime, p["batch_id"]) == []


@pytest.mark.parametrize(
    ("error", "calls", "outcome"),
    [
        (sa_exc.DataError("INSERT", {}, Exception("value out of range")), 1, "refused"),
        (
            sa_exc.OperationalError("INSERT", {}, ConnectionResetError("server closed the connection")),
            3,
            "ok",
        ),
    ],
)
def test_only_transient_database_errors_are_retried(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, error: sa_exc.DBAPIError, calls: int, outcome: str
) -> None:
    from rewardq.storage import write_scores

    upgrade(sqlite_url)
    app = create_app(Settings.from_env({}, database_url=sqlite_url), RewardsConfig.load(None))
    app.conf.task_always_eager = True
    attempts = []

    def fail_twice(*args: Any, **kwargs: Any) -> int:
        attempts.append(1)
        if len(attempts) <= 2:
            raise error
        return write_scores(*args, **kwargs)

    monkeypatch.setattr("rewardq.storage.record.write_scores", fail_twice)
    monkeypatch.setattr("rewardq.storage.record.time.sleep", lambda _: None)
    result = app.tasks[TASK_NAME].apply(args=[payload([{"completion": "a"}])])
    if outcome == "refused":
        assert isinstance(result.result, type(error))
    else:
        assert result.result["statuses"] == ["ok"]
    assert len(attempts) == calls
    app.rewardq_runtime.close()


def test_a_sample_nested_too_deep_fails_alone(runtime: WorkerRuntime) -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    p = payload(
        [{"completion": "<think>a</think>\n<answer>b</answer>"}, {"completion": "a", "columns": {"x": deep}}]
    )
    result = score_payload(runtime, p)
    assert result["statuses"] == ["ok", "error"]
    assert (
        result["errors"]["1"]
        == "invalid sample: nested deeper than 255 levels, the most rewardq's JSON encoder accepts"
    )
    assert [r.status for r in rows(runtime, p["batch_id"])] == ["ok", "error"]
