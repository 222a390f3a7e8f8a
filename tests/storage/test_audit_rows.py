"""The row is the table: what a writer gives, what a read returns and what a worker fills are the
columns of ``scores`` (storage.models.ScoreRow), stated there once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from sqlalchemy import Engine

from rewardq.storage import COLUMNS, REQUIRED, ScoreRecord, run_scores, scores_table, write_scores
from rewardq.storage.rows import CHAIN_COLUMNS, audit_rows, sample_hash
from rewardq.wire.schema import Sample, TaskEnvelope
from rewardq.workers.rewards.base import Score, ScoreMeta

TABLE = [c.key for c in scores_table.columns]


def a_task(n: int = 2) -> tuple[TaskEnvelope, list[Sample | None]]:
    raw = [{"prompt": "2+2?", "completion": f"{i}", "columns": {"id": f"s-{i}"}} for i in range(n)]
    task = TaskEnvelope(batch_id="b1", run_id="run-a", step=7, reward="accuracy", offset=4, samples=raw)
    return task, [Sample.model_validate(s) for s in raw]


def built(scores: list[Score], store_text: bool = True) -> list[dict[str, object]]:
    task, samples = a_task(len(scores))
    return audit_rows(
        task,
        samples,
        scores,
        scorer="math@1:abc",
        latency_ms=3.5,
        attempts=1,
        worker_host="node-1",
        worker_gpu="0",
        store_text=store_text,
    )


def test_every_column_a_writer_gives_has_one_filler() -> None:
    row = built([Score.ok(1.0, meta=ScoreMeta(cache_hit=True)), Score.failed("boom", meta=ScoreMeta())])[0]
    unfilled = [c for c in COLUMNS if c not in row]
    assert not unfilled, (
        f"columns of scores that no worker fills: {unfilled}; fill each in rewardq.storage.rows.audit_rows "
        "(or, for what a scorer reports, a field of rewardq.workers.rewards.base.ScoreMeta)"
    )
    unknown = [c for c in row if c not in COLUMNS]
    assert not unknown, f"audit_rows fills {unknown}, which are not columns of scores (storage/models.py)"


def test_score_meta_fields_are_columns() -> None:
    fields = [f.name for f in dataclasses.fields(ScoreMeta)]
    assert not set(fields) - set(COLUMNS), f"ScoreMeta fields without a column: {set(fields) - set(COLUMNS)}"


def test_the_writer_record_and_required_columns_come_from_the_table() -> None:
    assert [f.name for f in dataclasses.fields(ScoreRecord)] == TABLE
    assert list(COLUMNS) == [c for c in TABLE if c != "id" and c not in CHAIN_COLUMNS]
    not_null = [c.key for c in scores_table.columns if not c.nullable and c.key in COLUMNS]
    assert list(REQUIRED) == [c for c in not_null if c != "created_at"]  # created_at defaults to now


def test_built_rows_are_written_and_read_back_column_for_column(engine: Engine) -> None:
    meta = ScoreMeta(truncated=False, cache_hit=True, http_attempts=2, replica="r1", template_hash="ab" * 8)
    rows = built([Score.ok(0.5, raw="yes", meta=meta), Score.failed("bad\x00reply", meta=ScoreMeta())])
    with engine.begin() as conn:
        assert write_scores(conn, rows) == 2
    with engine.connect() as conn:
        records = run_scores(conn, "run-a")
    assert [r.sample_index for r in records] == [4, 5]
    for row, record in zip(rows, records, strict=True):
        assert {c: getattr(record, c) for c in COLUMNS} == row
        assert record.chain_seq is None and record.id is not None  # sealed later, by the sealer
    first = records[0]
    assert (first.prompt_text, first.completion_text, first.sample_id) == ("2+2?", "0", "s-0")
    assert first.sample_hash == sample_hash(a_task()[0].samples[0])
    assert records[1].error == "bad\ufffdreply"  # NUL made storable
    assert isinstance(first.created_at, datetime) and first.created_at.tzinfo == UTC


def test_text_is_kept_only_with_store_text() -> None:
    row = built([Score.ok(1.0, meta=ScoreMeta())], store_text=False)[0]
    assert row["prompt_text"] is None and row["completion_text"] is None
