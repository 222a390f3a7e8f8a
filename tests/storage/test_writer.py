"""write_scores on SQLite and the real PostgreSQL: idempotency, validation, round trips, concurrency."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, select

from rewardq.storage import COLUMNS, InvalidScoreRow, make_engine, scores_table, upgrade, write_scores

MakeRow = Callable[..., dict[str, Any]]
CountScores = Callable[[Engine], int]


def stored(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(scores_table).order_by(scores_table.c.batch_id, scores_table.c.sample_index)
        return [dict(row) for row in conn.execute(query).mappings()]


def test_inserts_rows_and_reads_them_back(engine: Engine, make_row: MakeRow) -> None:
    when = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    rows = [make_row(i, value=i / 4, created_at=when) for i in range(4)]
    rows.append(
        make_row(
            4,
            value=None,
            status="error",
            error="judge said: ¯\\_(ツ)_/¯",
            raw="<score>n/a</score>",
            step=None,
            sample_id=None,
            worker_gpu=None,
            prompt_text="What is 2+2? ünïcödé",
            completion_text="4",
            created_at=when,
            truncated=True,
            cache_hit=False,
            http_attempts=3,
            replica="http://judge-1:8000/v1",
            prompt_tokens=120,
            completion_tokens=7,
            template_hash="3f2a9c0d1e4b5a6c",
            group_key="g:uid-7",
            step_scores="[0.25, null, 1.0]",
            step_ends="[3, 9, 14]",
        )
    )
    with engine.begin() as conn:
        assert write_scores(conn, rows) == 5
    got = stored(engine)
    assert len(got) == 5
    for row, back in zip(rows, got, strict=True):
        assert isinstance(back["id"], int)
        assert {c: back[c] for c in COLUMNS} == row
        assert back["created_at"].tzinfo is not None


def test_the_same_rows_twice_insert_nothing_the_second_time(
    engine: Engine, make_row: MakeRow, count_scores: CountScores
) -> None:
    rows = [make_row(i) for i in range(50)]
    with engine.begin() as conn:
        assert write_scores(conn, rows) == 50
    with engine.begin() as conn:
        assert write_scores(conn, rows) == 0
    assert count_scores(engine) == 50


def test_partial_overlap_inserts_only_the_new_rows_and_the_first_write_wins(
    engine: Engine, make_row: MakeRow, count_scores: CountScores
) -> None:
    with engine.begin() as conn:
        assert write_scores(conn, [make_row(i, value=1.0) for i in range(10)]) == 10
    with engine.begin() as conn:
        assert write_scores(conn, [make_row(i, value=0.0) for i in range(5, 15)]) == 5
    values = {r["sample_index"]: r["value"] for r in stored(engine)}
    assert count_scores(engine) == 15
    assert [values[i] for i in range(15)] == [1.0] * 10 + [0.0] * 5


def test_the_key_is_batch_sample_and_reward(
    engine: Engine, make_row: MakeRow, count_scores: CountScores
) -> None:
    rows = [
        make_row(0),
        make_row(0, reward="format"),  # another reward on the same sample
        make_row(0, batch_id="b2"),  # the same sample in another batch: a rescoring
        make_row(0, run_id="run-b", step=3),  # same key in another run: still the same key
    ]
    with engine.begin() as conn:
        assert write_scores(conn, rows) == 3
    assert count_scores(engine) == 3


def test_a_key_repeated_within_one_call_is_written_once(
    engine: Engine, make_row: MakeRow, count_scores: CountScores
) -> None:
    with engine.begin() as conn:
        assert write_scores(conn, [make_row(0, value=0.25), make_row(1), make_row(0, value=0.75)]) == 2
    assert count_scores(engine) == 2
    assert stored(engine)[0]["value"] == 0.25


def test_does_not_commit(engine: Engine, make_row: MakeRow, count_scores: CountScores) -> None:
    with engine.connect() as conn:
        assert write_scores(conn, [make_row(i) for i in range(3)]) == 3
        conn.rollback()
    assert count_scores(engine) == 0


def test_empty_batch_writes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert write_scores(conn, []) == 0


def test_created_at_defaults_to_now_and_is_kept_in_utc(engine: Engine, make_row: MakeRow) -> None:
    plus_two = timezone(timedelta(hours=2))
    given = datetime(2025, 6, 1, 14, 0, tzinfo=plus_two)
    before = datetime.now(UTC)
    with engine.begin() as conn:
        write_scores(conn, [make_row(0), make_row(1, created_at=given)])
    after = datetime.now(UTC)
    first, second = stored(engine)
    assert before - timedelta(seconds=1) <= first["created_at"] <= after + timedelta(seconds=1)
    assert second["created_at"] == given
    assert second["created_at"].utcoffset() == timedelta(0)


def test_rows_may_leave_optional_columns_out_and_give_ints(engine: Engine) -> None:
    row = {
        "run_id": "run-a",
        "batch_id": "b1",
        "sample_index": 0,
        "sample_hash": "a" * 64,
        "reward": "accuracy",
        "scorer": "rule@1:abc",
        "status": "ok",
        "value": 1,  # an int is stored as a float
        "latency_ms": 3,
        "attempts": 2,
        "worker_host": "node-1",
    }
    with engine.begin() as conn:
        assert write_scores(conn, [row]) == 1
    (back,) = stored(engine)
    assert back["value"] == 1.0 and isinstance(back["value"], float)
    assert back["latency_ms"] == 3.0
    assert back["step"] is None and back["error"] is None and back["worker_gpu"] is None


def test_large_batches_with_long_texts(engine: Engine, make_row: MakeRow, count_scores: CountScores) -> None:
    text = "x" * 20_000
    rows = [make_row(i, value=math.sin(i), prompt_text=text, completion_text=text) for i in range(3000)]
    with engine.begin() as conn:
        assert write_scores(conn, rows) == 3000
    assert count_scores(engine) == 3000


BAD_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("run_id", {"run_id": None}, "is required"),
    ("sample_hash", {"sample_hash": "ABC"}, "64 lowercase hex"),
    ("status", {"status": "maybe"}, "not one of ok, unscorable, error, timeout"),
    ("status", {"status": ["ok"]}, "not one of"),
    ("value", {"value": None}, "status 'ok' needs a finite value"),
    ("value", {"value": float("nan")}, "finite"),
    ("value", {"value": float("inf")}, "finite"),
    ("value", {"value": True}, "finite"),
    ("value", {"status": "error", "value": 0.0}, "must be None when status is 'error'"),
    ("run_id", {"run_id": "r" * 201}, "longer than 200"),
    ("batch_id", {"batch_id": 17}, "must be a string"),
    ("error", {"error": b"bytes"}, "must be a string"),
    ("sample_index", {"sample_index": -1}, "non-negative int"),
    ("attempts", {"attempts": "1"}, "non-negative int"),
    ("latency_ms", {"latency_ms": None}, "is required"),
    ("created_at", {"created_at": datetime(2025, 1, 1)}, "timezone-aware"),
    ("valeu", {"valeu": 1.0}, "not a column of scores"),
    ("truncated", {"truncated": 1}, "bool or None"),
    ("cache_hit", {"cache_hit": "yes"}, "bool or None"),
    ("http_attempts", {"http_attempts": -2}, "non-negative int"),
    ("prompt_tokens", {"prompt_tokens": 1.5}, "non-negative int"),
    ("replica", {"replica": "u" * 257}, "longer than 256"),
    ("template_hash", {"template_hash": 7}, "must be a string"),
]


@pytest.mark.parametrize(("field", "change", "message"), BAD_ROWS, ids=[f"{f}:{m}" for f, _, m in BAD_ROWS])
def test_a_bad_row_is_named_by_index_and_field(
    sqlite_url: str, make_row: MakeRow, field: str, change: dict[str, Any], message: str
) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    rows = [make_row(i) for i in range(5)]
    rows[3].update(change)
    try:
        with pytest.raises(InvalidScoreRow, match=message) as info, engine.begin() as conn:
            write_scores(conn, rows)
    finally:
        engine.dispose()
    error = info.value
    assert issubclass(type(error), ValueError)
    assert (error.index, error.field) == (3, field)
    assert f"audit row 3, field '{field}'" in str(info.value)


def test_a_missing_required_key_is_named(engine: Engine, make_row: MakeRow) -> None:
    row = make_row(0)
    del row["reward"]
    with pytest.raises(InvalidScoreRow, match="field 'reward': is required"), engine.begin() as conn:
        write_scores(conn, [make_row(1), row])


def test_validation_errors_leave_nothing_written(
    engine: Engine, make_row: MakeRow, count_scores: CountScores
) -> None:
    """Every kind of bad row, on each backend: the error comes before any row of the call is written."""
    with engine.begin() as conn:
        write_scores(conn, [make_row(100)])
    for field, change, _ in BAD_ROWS:
        rows = [make_row(i) for i in range(5)]
        rows[3].update(change)
        with engine.connect() as conn:
            with pytest.raises(InvalidScoreRow):
                write_scores(conn, rows)
            conn.commit()  # even a caller that commits anyway has nothing of the bad call to commit
        assert count_scores(engine) == 1, field


def test_the_check_constraint_backs_the_status_rule(engine: Engine) -> None:
    """The database refuses an unknown status too, for writers that bypass write_scores."""
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            scores_table.insert().values(
                run_id="r",
                batch_id="b",
                sample_index=0,
                sample_hash="a" * 64,
                reward="x",
                scorer="s",
                status="bogus",
                latency_ms=1.0,
                attempts=1,
                worker_host="h",
            )
        )


WRITER = textwrap.dedent(
    """
    import hashlib, sys, time
    from rewardq.storage import make_engine, write_scores

    url, worker, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    engine = make_engine(url)
    time.sleep(max(0.0, start - time.time()))
    inserted = 0
    for batch in range(12):
        # Every worker writes batches 0-11, each as 4 chunks of 50 samples, in its own order: most of
        # what a worker writes, another wrote a moment before (redelivered tasks racing).
        rows = [
            {
                "run_id": "run-a", "step": batch, "batch_id": f"b{batch}", "sample_index": i,
                "sample_hash": hashlib.sha256(f"{batch}/{i}".encode()).hexdigest(), "reward": "accuracy",
                "scorer": "rule@1:abc", "value": float(worker), "status": "ok", "latency_ms": 1.0,
                "attempts": 1, "worker_host": f"worker-{worker}",
            }
            for i in range(200)
        ]
        for chunk in range(4):
            part = rows[((chunk + worker) % 4) * 50 :][:50]
            with engine.begin() as conn:
                inserted += write_scores(conn, part)
    engine.dispose()
    print(inserted)
    """
)


def test_concurrent_writer_processes_share_one_database(
    database_url: str, count_scores: CountScores, tmp_path: Any
) -> None:
    upgrade(database_url)
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, database_url, str(w), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    inserted = [int(out) for out, _ in outputs]
    engine = make_engine(database_url)
    try:
        assert count_scores(engine) == 12 * 200
    finally:
        engine.dispose()
    assert sum(inserted) == 12 * 200  # each row counted by exactly the worker that wrote it
