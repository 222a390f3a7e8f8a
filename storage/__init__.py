"""The audit store: every score a worker computes, in SQLite or PostgreSQL, and the queries over it.

- :func:`make_engine` — an engine set up for the backend (SQLite WAL + busy timeout, psycopg 3).
- :func:`upgrade` / :func:`current` / :func:`head` — the schema, by Alembic migrations shipped here.
- :func:`write_scores` — the idempotent bulk insert workers call, in their own transaction.
- :func:`list_runs`, :func:`run_scores`, :func:`step_stats`, :func:`sample_history` — the reads behind
  ``rewardq audit``; :func:`verify_run` checks a run's hash chain (``rewardq audit verify``).

Functions take a connection and never commit; the caller owns the transaction. Nothing here connects
at import. See docs/audit.md.
"""

from __future__ import annotations

from rewardq.storage.engine import make_engine
from rewardq.storage.migrate import current, downgrade, head, upgrade
from rewardq.storage.models import Base, ScoreRow, scores_table
from rewardq.storage.queries import (
    RunSummary,
    ScoreRecord,
    StepStats,
    list_runs,
    run_scores,
    sample_history,
    step_stats,
)
from rewardq.storage.verify import ChainReport, verify_run
from rewardq.storage.writer import COLUMNS, REQUIRED, InvalidScoreRow, write_scores

__all__ = [
    "COLUMNS",
    "REQUIRED",
    "Base",
    "ChainReport",
    "InvalidScoreRow",
    "RunSummary",
    "ScoreRecord",
    "ScoreRow",
    "StepStats",
    "current",
    "downgrade",
    "head",
    "list_runs",
    "make_engine",
    "run_scores",
    "sample_history",
    "scores_table",
    "step_stats",
    "upgrade",
    "verify_run",
    "write_scores",
]
