"""What the command line prints when a command fails: one line naming the cause, with every known
secret (passwords in the configured URLs, the audit key) masked. A traceback only with ``--debug``
or REWARDQ_DEBUG=1."""

from __future__ import annotations

import os

from rewardq.wire.errors import RewardqError
from rewardq.workers.cli.secrets import known_secrets, redact

DEBUG_ENV = "REWARDQ_DEBUG"


def debug_requested() -> bool:
    """True when the user asked for tracebacks (``--debug`` sets REWARDQ_DEBUG=1)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def explain(exc: BaseException) -> str:
    """One line naming the cause of a failed command (a rewardq error keeps its own message, which for
    invalid input lists the problems, one per line)."""
    return redact(_describe(exc), known_secrets())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RewardqError):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename}: is a directory, not a file"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: no such file or directory"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    database = _database_failure(exc)
    if database is not None:
        return database
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


def _database_failure(exc: BaseException) -> str | None:
    """An audit-store failure as 'the audit store … : cause', or None if it is not one."""
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:
        return None
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    cause = str(exc.orig).strip() if exc.orig is not None else str(exc)
    kind = "unreachable" if isinstance(exc, sa_exc.OperationalError) else "refused the request"
    return f"the audit store (REWARDQ_DATABASE_URL) {kind}: {' '.join(cause.split())}"
