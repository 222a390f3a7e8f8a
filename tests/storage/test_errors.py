"""Transient audit-store failures (retried) against permanent ones (never retried), from real drivers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from rewardq.storage import make_engine, upgrade
from rewardq.storage.errors import is_transient


def _insert_error(url: str, **values: object) -> sa_exc.DBAPIError:
    upgrade(url)
    engine = make_engine(url)
    row = {"run_id": "r", "step": 1, "batch_id": "b", "sample_id": None, **values}
    try:
        with engine.begin() as conn, pytest.raises(sa_exc.DBAPIError) as info:
            conn.execute(
                sa.text(
                    "INSERT INTO scores (run_id, step, batch_id, sample_index, sample_hash, sample_id,"
                    " reward, scorer, status, latency_ms, attempts, worker_host, created_at)"
                    " VALUES (:run_id, :step, :batch_id, 0, 'h', :sample_id, 'r', 's', 'ok', 0, 1, 'w',"
                    " CURRENT_TIMESTAMP)"
                ),
                row,
            )
        return info.value
    finally:
        engine.dispose()


def test_values_postgres_refuses_are_permanent(postgres_url: str) -> None:
    assert not is_transient(_insert_error(postgres_url, run_id="a\x00b"))
    assert not is_transient(_insert_error(postgres_url, step=2**31))
    assert not is_transient(_insert_error(postgres_url, sample_id="x" * 513))


def test_an_unreachable_postgres_is_transient() -> None:
    engine = make_engine("postgresql://rewardq:secret@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    with pytest.raises(sa_exc.DBAPIError) as info:
        engine.connect()
    assert is_transient(info.value)


def test_sqlite_lock_is_transient_and_a_missing_table_is_not(tmp_path: Path) -> None:
    locked = sa_exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    missing = sa_exc.OperationalError("INSERT", {}, sqlite3.OperationalError("no such table: scores"))
    assert is_transient(locked) and not is_transient(missing)
    integrity = sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("NOT NULL constraint failed"))
    assert not is_transient(integrity)
    assert is_transient(ConnectionResetError()) and not is_transient(ValueError("x"))
