"""The score task's body, in-process, against SQLite and the real PostgreSQL."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from rewardq import Settings
from rewardq.storage import upgrade
from rewardq.storage.rows import sample_hash
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, Score, ScoreMeta
from rewardq.workers.rewards.config import RewardsConfig, RewardSpec
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.task import InvalidTask, score_payload


class Misbehaving(Reward):
    """Returns what its sample's completion asks for."""

    kind = "misbehaving"
    runs_in = "process"  # an in-code kind: a child process, which reads the rewards file, cannot build it

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        out = []
        for s in samples:
            text = s.completion_text
            if text == "raise":
                raise RuntimeError("boom")
            out.append(
                {
                    "nan": Score(math.nan),
                    "inf": Score(math.inf),
                    "weird": Score(1.0, "weird"),  # type: ignore[arg-type]
                    "valued-error": Score(3.0, "error", "bad"),
                    "none": None,
                }.get(text, Score.ok(len(text)))
            )
        return out  # type: ignore[return-value]


class Judged(Reward):
    """Reports what a judge would: raw reply and the audit extras."""

    kind = "judged"
    runs_in = "process"  # an in-code kind: a child process, which reads the rewards file, cannot build it

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        meta = ScoreMeta(cache_hit=True, http_attempts=2, replica="http://j1/v1", template_hash="ab" * 8)
        return [Score.ok(0.5, raw="[[5]]", meta=meta), Score.failed("parse_error", raw="hm", meta=meta)]


class Short(Reward):
    kind = "short"
    runs_in = "process"  # an in-code kind: a child process, which reads the rewards file, cannot build it

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        return [Score.ok(1.0)]


@pytest.fixture
def runtime(database_url: str) -> Any:
    upgrade(database_url)
    config = RewardsConfig.load(None)
    config.kinds.add("misbehaving", Misbehaving)
    config.kinds.add("short", Short)
    config.kinds.add("judged", Judged)
    config.specs["judged"] = RewardSpec("judged", "judged", Judged.Options())
    config.specs["odd"] = RewardSpec("odd", "misbehaving", Misbehaving.Options())
    config.specs["short"] = RewardSpec("short", "short", Short.Options())
    rt = WorkerRuntime(Settings.from_env({}, database_url=database_url, store_text=True), config)
    yield rt
    rt.close()


def payload(reward: str, completions: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "batch_id": uuid.uuid4().hex,
        "run_id": "t",
        "step": 1,
        "reward": reward,
        "offset": 10,
        "samples": [
            {"prompt": "p", "completion": c, "columns": {"id": f"id{i}"}} for i, c in enumerate(completions)
        ],
    } | extra


def audit(runtime: WorkerRuntime, batch: str) -> list[Any]:
    with runtime.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT sample_index, value, status, error, sample_id, prompt_text, completion_text,"
                    " scorer, sample_hash FROM scores WHERE batch_id = :b ORDER BY sample_index"
                ),
                {"b": batch},
            )
        )


def test_what_a_reward_returns_is_made_consistent_before_the_audit(runtime: WorkerRuntime) -> None:
    p = payload("odd", ["nan", "inf", "weird", "valued-error", "none", "abc"])
    result = score_payload(runtime, p, worker="w1")
    assert result["statuses"] == ["error", "error", "error", "error", "error", "ok"]
    assert result["values"] == [None, None, None, None, None, 3.0]
    assert "non-finite" in result["errors"]["0"] and "unknown status" in result["errors"]["2"]
    assert result["errors"]["3"] == "bad"
    rows = audit(runtime, p["batch_id"])
    assert [r.sample_index for r in rows] == [10, 11, 12, 13, 14, 15]
    assert rows[5].value == 3.0 and rows[5].status == "ok" and rows[5].sample_id == "id5"
    assert rows[5].prompt_text == "p" and rows[5].completion_text == "abc", "store_text is on"
    assert rows[5].scorer.startswith("misbehaving@1:")
    assert rows[5].sample_hash == sample_hash(p["samples"][5])


def test_a_reward_that_raises_or_miscounts_fails_its_chunk_not_the_worker(runtime: WorkerRuntime) -> None:
    result = score_payload(runtime, payload("odd", ["a", "raise"]))
    assert result["statuses"] == ["error", "error"]
    assert "RuntimeError: boom" in result["errors"]["0"]
    result = score_payload(runtime, payload("short", ["a", "b"]))
    assert (
        result["statuses"] == ["error", "error"]
        and "returned 1 scores for 2 samples" in result["errors"]["1"]
    )


def test_unknown_rewards_and_bad_samples_are_recorded_as_errors(runtime: WorkerRuntime) -> None:
    p = payload("nope", ["a"])
    result = score_payload(runtime, p)
    assert result["statuses"] == ["error"] and "unknown reward 'nope'" in result["errors"]["0"]
    assert [r.status for r in audit(runtime, p["batch_id"])] == ["error"]
    p = payload("format", ["<think>a</think><answer>b</answer>", 5])
    result = score_payload(runtime, p)
    assert result["statuses"] == ["ok", "error"]
    assert result["errors"]["1"].startswith("invalid sample: field 'completion'")


def test_a_sample_that_is_no_object_is_an_invalid_sample(runtime: WorkerRuntime) -> None:
    # Found by tests/workers/test_fuzz_messages.py: a null sample failed the task with an IndexError.
    p = payload("format", ["<think>a</think><answer>b</answer>"])
    p["samples"] = [None, *p["samples"], 7]
    result = score_payload(runtime, p)
    assert result["statuses"] == ["error", "ok", "error"]
    assert result["errors"]["0"].startswith("invalid sample: field 'sample': ")
    assert [r.status for r in audit(runtime, p["batch_id"])] == ["error", "ok", "error"]


def test_oversized_samples_are_rejected_at_the_worker(database_url: str) -> None:
    upgrade(database_url)
    rt = WorkerRuntime(
        Settings.from_env({}, database_url=database_url, max_record_bytes=200), RewardsConfig.load(None)
    )
    result = score_payload(rt, payload("format", ["x" * 500, "short"]))
    assert result["statuses"] == ["error", "ok"]
    assert "over the limit of 200 (the workers' REWARDQ_MAX_RECORD_BYTES)" in result["errors"]["0"]
    rt.close()


def test_a_malformed_envelope_is_rejected(runtime: WorkerRuntime) -> None:
    with pytest.raises(InvalidTask, match="rejected task: batch_id: Field required"):
        score_payload(runtime, {"run_id": "t", "reward": "format", "samples": [{"completion": "a"}]})
    with pytest.raises(InvalidTask, match="samples: List should have at least 1 item"):
        score_payload(runtime, payload("format", []))


def test_a_redelivered_task_writes_its_rows_once(runtime: WorkerRuntime) -> None:
    p = payload("format", ["a", "b"])
    score_payload(runtime, p, attempts=1)
    score_payload(runtime, p, attempts=2)
    assert len(audit(runtime, p["batch_id"])) == 2


def test_sample_hash_is_canonical() -> None:
    a = {"prompt": None, "completion": "x", "columns": {"b": 1, "a": 2}}
    b = {"columns": {"a": 2, "b": 1}, "completion": "x"}
    assert sample_hash(a) == sample_hash(b)
    assert sample_hash(a) != sample_hash(a | {"completion": "y"})


def test_engine_is_not_shared_across_a_fork(runtime: WorkerRuntime) -> None:
    engine = runtime.engine
    runtime.process.pid = -1  # what a forked child sees
    assert runtime.engine is not engine
    engine.dispose()


def test_what_a_scorer_reports_beyond_the_value_reaches_the_audit(runtime: WorkerRuntime) -> None:
    p = payload("judged", ["a", "b"])
    assert score_payload(runtime, p)["statuses"] == ["ok", "error"]
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT raw, cache_hit, http_attempts, replica, template_hash, truncated FROM scores"
                " WHERE batch_id = :b ORDER BY sample_index"
            ),
            {"b": p["batch_id"]},
        ).all()
    assert [r.raw for r in rows] == ["[[5]]", "hm"]
    assert all(
        r.cache_hit and r.http_attempts == 2 and r.replica == "http://j1/v1" and r.truncated is None
        for r in rows
    )
