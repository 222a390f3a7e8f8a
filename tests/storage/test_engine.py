"""make_engine: URL normalization, SQLite set-up for concurrent writers, PostgreSQL via psycopg 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from rewardq.storage import make_engine
from rewardq.storage.engine import SQLITE_BEGIN_OPTION, normalize_url


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:p@db:5432/audit", "postgresql+psycopg"),
        ("postgres://u:p@db/audit", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/audit", "postgresql+psycopg"),
        ("postgres+psycopg://u@db/audit", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@db/audit", "postgresql+psycopg2"),
        ("sqlite:///audit.db", "sqlite"),
    ],
)
def test_normalize_url_maps_postgresql_to_psycopg3(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


def test_unsupported_backend_is_refused_without_leaking_the_password() -> None:
    with pytest.raises(ValueError, match="unsupported audit database") as info:
        make_engine("mysql://user:s3cret@db/audit")
    assert "s3cret" not in str(info.value)


def test_sqlite_engine_creates_the_directory_but_does_not_connect(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "audit.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        assert db.parent.is_dir()
        assert not db.exists()  # nothing connects until asked
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert db.exists()
    finally:
        engine.dispose()


def test_sqlite_connections_use_wal_normal_sync_and_a_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, sqlite_busy_timeout_s=7.5)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7500
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_memory_database_works(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_ddl_is_transactional(sqlite_url: str) -> None:
    """SQLAlchemy emits BEGIN, so DDL rolls back with its transaction (the sqlite3 module would not)."""
    engine = make_engine(sqlite_url)
    try:
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            raise RuntimeError("roll it back")
        assert not inspect(engine).has_table("t")
    finally:
        engine.dispose()


def test_sqlite_begin_immediate_takes_the_write_lock_at_begin(sqlite_url: str) -> None:
    first = make_engine(sqlite_url)
    second = make_engine(sqlite_url, sqlite_busy_timeout_s=0.2)
    try:
        with first.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        with first.connect() as holder:
            holder.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with holder.begin():
                # A deferred reader still reads (WAL) ...
                with second.connect() as reader:
                    assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0
                # ... but a second immediate transaction waits for the lock, then gives up.
                with pytest.raises(OperationalError, match="locked"), second.connect() as writer:
                    writer.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
                    writer.begin()
    finally:
        first.dispose()
        second.dispose()


def test_sqlite_begin_mode_is_checked(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with pytest.raises(ValueError, match="sqlite_begin"), engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: "LATER"})
            conn.begin()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_engine_uses_psycopg3_and_names_the_application(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    engine = make_engine(plain)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.execute(text("SHOW application_name")).scalar() == "rewardq"
    finally:
        engine.dispose()


def _connect_at_once(url: str, barrier: Any, errors: Any) -> None:
    barrier.wait()
    try:
        make_engine(url).connect().close()
    except Exception as e:
        errors.put(repr(e))


def test_processes_opening_a_new_sqlite_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    """SQLite refuses the WAL switch at once (no busy wait) to a connection racing another for it."""
    import multiprocessing
    import sqlite3

    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for round_ in range(20):
        path = tmp_path / f"race-{round_}.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x)")
        conn.close()
        barrier = context.Barrier(6)
        procs = [
            context.Process(target=_connect_at_once, args=(f"sqlite:///{path}", barrier, errors))
            for _ in range(6)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    assert errors.empty(), errors.get()
