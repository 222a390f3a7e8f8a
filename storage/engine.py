"""Engines for the audit store: a SQLite file shared by worker processes, or PostgreSQL via psycopg 3.

:func:`make_engine` is the only place that knows how each backend must be set up; nothing connects
until a connection is asked for.

SQLite, as several worker processes writing one file need it:

- ``journal_mode=WAL`` (readers never block the writer and the writer never blocks readers),
  ``synchronous=NORMAL`` (no fsync per commit; a power loss may drop the last commits, never corrupt),
  a ``busy_timeout`` so that a writer waits for the lock instead of failing, foreign keys on, a larger
  page cache and fewer checkpoints (see the constants below);
- the parent directory of the file is created;
- SQLAlchemy, not the ``sqlite3`` module, emits ``BEGIN``, so every transaction (DDL and SELECTs
  included) is a real one. It is ``BEGIN`` (deferred) unless the ``sqlite_begin`` execution option
  says ``"IMMEDIATE"``: a transaction that reads before it writes should ask for it, because a
  deferred one that has read cannot wait for the write lock (SQLite fails it at once instead). A
  transaction whose first statement is a write, like :func:`~rewardq.storage.writer.write_scores` in
  ``engine.begin()``, waits as it should either way.

PostgreSQL: ``postgresql://`` and ``postgres://`` URLs use psycopg 3; connections are pre-pinged (a
restarted server does not fail the next task) and carry ``application_name=rewardq``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from rewardq.wire.errors import UnsupportedDatabase

SQLITE_BUSY_TIMEOUT_S = 60.0
# A 64 MiB page cache per connection (the default is 2 MiB) and a checkpoint every ~40 MiB of WAL
# (the default is ~4 MiB): the random-keyed indexes (sample_hash, sample_id) dirty about one page per
# row, and with the defaults nearly every commit of a 1,000-row batch also ran a checkpoint.
# Measured 31,600 → 45,000 rows/s (docs/audit.md).
SQLITE_CACHE_KIB = 65536
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10000
SQLITE_BEGIN_OPTION = "sqlite_begin"
_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


def normalize_url(url: str | URL) -> URL:
    """``url`` as a SQLAlchemy URL with the driver rewardq uses: psycopg 3 for PostgreSQL.

    Raises UnsupportedDatabase (a ValueError) for a backend other than SQLite or PostgreSQL.
    """
    u = make_url(url)
    backend = u.get_backend_name()
    if backend in ("postgresql", "postgres"):
        driver = u.drivername.partition("+")[2] or "psycopg"
        return u.set(drivername=f"postgresql+{driver}")
    if backend == "sqlite":
        return u
    raise UnsupportedDatabase(
        f"unsupported audit database {u.render_as_string(hide_password=True)!r}: "
        "use sqlite:///PATH or postgresql://…"
    )


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite URL names, or None for an in-memory or URI-style (``file:…``) database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(
    url: str | URL, *, sqlite_busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S, **kwargs: Any
) -> Engine:
    """An engine for the audit store at ``url`` (SQLite or PostgreSQL), set up as described above.

    ``kwargs`` go to :func:`sqlalchemy.create_engine` (``echo``, ``pool_size`` …). Creates the SQLite
    file's directory; does not connect.
    """
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u, sqlite_busy_timeout_s, kwargs)
    connect_args = dict(kwargs.pop("connect_args", {}))
    if "application_name" not in u.query:
        connect_args.setdefault("application_name", "rewardq")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(u, connect_args=connect_args, **kwargs)


def _enable_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL (it stays so). The switch needs an exclusive lock and SQLite may refuse
    it at once, without its busy handler, while another process makes the same switch on a new file
    (workers starting together): so retry until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _sqlite_engine(url: URL, busy_timeout_s: float, kwargs: dict[str, Any]) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    connect_args = dict(kwargs.pop("connect_args", {}))
    # The driver's own busy timeout, in effect from the very first statement (the WAL switch below).
    connect_args.setdefault("timeout", busy_timeout_s)
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    busy_ms = round(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Hand BEGIN over to SQLAlchemy (see _on_begin): the sqlite3 module's legacy mode would
        # leave SELECTs and DDL outside any transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            _enable_wal(cursor, busy_timeout_s)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = str(conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION}={mode!r}: expected one of {sorted(_SQLITE_BEGIN_MODES)}")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
