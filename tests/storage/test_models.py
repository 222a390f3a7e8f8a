"""The ORM model on both backends: round trips, UTC timestamps, the server default, __repr__."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from rewardq.storage import ScoreRow


def a_score(**overrides: object) -> ScoreRow:
    values: dict[str, object] = {
        "run_id": "run-a",
        "step": 3,
        "batch_id": "b1",
        "sample_index": 0,
        "sample_hash": "c" * 64,
        "reward": "accuracy",
        "scorer": "math@1:abc",
        "value": 0.5,
        "status": "ok",
        "latency_ms": 2.0,
        "attempts": 1,
        "worker_host": "node-1",
    }
    values.update(overrides)
    return ScoreRow(**values)


def test_orm_round_trip_with_utc_timestamps(engine: Engine) -> None:
    tokyo = timezone(timedelta(hours=9))
    when = datetime(2025, 1, 2, 9, 0, tzinfo=tokyo)
    with Session(engine) as session:
        session.add_all([a_score(created_at=when), a_score(sample_index=1)])
        session.commit()
    with Session(engine) as session:
        first, second = session.scalars(select(ScoreRow).order_by(ScoreRow.sample_index)).all()
        assert first.created_at == when
        assert first.created_at.tzinfo == UTC
        assert second.created_at.tzinfo == UTC
        assert abs(datetime.now(UTC) - second.created_at) < timedelta(minutes=1)
        assert repr(first).startswith("ScoreRow(id=")
        assert "reward='accuracy'" in repr(first) and "value=0.5" in repr(first)


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(a_score(created_at=datetime(2025, 1, 2, 9, 0)))
        with pytest.raises(StatementError, match="timezone-aware"):
            session.commit()


def test_the_server_default_stamps_rows_written_in_plain_sql(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scores (run_id, batch_id, sample_index, sample_hash, reward, scorer,"
                " status, latency_ms, attempts, worker_host)"
                " VALUES ('r', 'b', 0, :h, 'x', 's', 'unscorable', 1.0, 1, 'h')"
            ),
            {"h": "d" * 64},
        )
    with Session(engine) as session:
        score = session.scalars(select(ScoreRow)).one()
        assert score.created_at.tzinfo == UTC
        assert abs(datetime.now(UTC) - score.created_at) < timedelta(minutes=1)
