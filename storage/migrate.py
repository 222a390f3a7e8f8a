"""Schema migrations of the audit store, applied from code: :func:`upgrade`, :func:`current`, :func:`head`.

The Alembic scripts ship inside the package (``rewardq/storage/migrations``); the Alembic config is
built here, so no ``alembic.ini`` is needed. Several worker processes may call :func:`upgrade` at the
same time when they start: each takes a lock first, and the ones that get it after the first find the
schema at head and do nothing.

- PostgreSQL: ``pg_advisory_xact_lock`` in the migration's transaction (DDL is transactional there, so
  the lock, the DDL and the version stamp commit or roll back together).
- SQLite: ``BEGIN IMMEDIATE`` takes the file's write lock for the whole migration, and the others wait
  on SQLite's busy timeout (SQLAlchemy emits the BEGIN, so DDL is transactional here too).

Both wait at most :data:`LOCK_TIMEOUT_S` for the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from rewardq.storage.engine import SQLITE_BEGIN_OPTION, make_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Key of the PostgreSQL advisory lock: "rewardq" in ASCII, as a bigint.
LOCK_KEY = int.from_bytes(b"rewardq", "big")
LOCK_TIMEOUT_S = 300.0


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the audit store's migrations (``sqlalchemy.url`` set only for offline SQL)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates %: escaped characters in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision the package's migrations know."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``; safe to call from several processes at once."""
    _run(url, lambda config: command.upgrade(config, revision), f"upgrade to {revision}")


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"``: drop everything)."""
    _run(url, lambda config: command.downgrade(config, revision), f"downgrade to {revision}")


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it was never migrated."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _run(url: str, step: Callable[[Config], None], what: str) -> None:
    shown = make_url(url).render_as_string(hide_password=True)
    engine = make_engine(url, poolclass=NullPool, sqlite_busy_timeout_s=LOCK_TIMEOUT_S)
    try:
        with engine.connect() as conn, _locked_transaction(conn):
            config = alembic_config()
            config.attributes["connection"] = conn
            before = MigrationContext.configure(conn).get_current_revision()
            log.info("audit store %s: %s (at %s)", shown, what, before)
            step(config)
    finally:
        engine.dispose()


@contextmanager
def _locked_transaction(conn: Connection) -> Iterator[None]:
    """A transaction holding the migration lock of ``conn``'s database until it ends."""
    if conn.dialect.name == "sqlite":
        conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield
        return
    with conn.begin():
        conn.execute(text(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT_S * 1000)}ms'"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield
