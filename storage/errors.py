"""Which audit-store failures are worth retrying: a lost connection, a busy or locked database, a
serialization failure; never a value the database refuses (a NUL character, an integer out of range,
a string too long), which would fail the same way on every attempt."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# PostgreSQL SQLSTATE classes and codes that describe the server's state, not the statement:
# 08 connection exception, 40 transaction rollback (serialization failure, deadlock),
# 53 insufficient resources, 57P operator intervention (shutdown, starting up), 55P03 lock not available.
_TRANSIENT_CLASSES = ("08", "40", "53", "57P")
_TRANSIENT_CODES = frozenset({"55P03", "55006", "58000", "58030"})
# SQLite reports all of its failures as OperationalError; only these are about contention.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error", "unable to open")


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same write may succeed (the store was away, busy or restarting)."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return isinstance(exc, ConnectionError | TimeoutError)
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate.startswith(_TRANSIENT_CLASSES) or sqlstate in _TRANSIENT_CODES
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        module = type(exc.orig).__module__ if exc.orig is not None else ""
        if module.startswith("sqlite3"):
            text = str(exc.orig).lower()
            return any(marker in text for marker in _SQLITE_TRANSIENT)
        return True  # a driver's connection-level failure without a SQLSTATE (the server never answered)
    return False
