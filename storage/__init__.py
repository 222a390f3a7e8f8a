"""The audit store: every score a worker computes, in SQLite or PostgreSQL, and the queries over it.

- :func:`make_engine` — an engine set up for the backend (SQLite WAL + busy timeout, psycopg 3).
- :func:`upgrade` / :func:`current` / :func:`head` — the schema, by Alembic migrations shipped here.
- :data:`COLUMNS`, :class:`ScoreRecord` — the audit row, derived from the table (:mod:`.rows`, which also
  builds a worker's rows; :mod:`.record` writes them and reads them back, retrying an outage).
- :func:`write_scores` — the idempotent bulk insert workers call, in their own transaction; rows are
  written unsealed and chained after they commit by :func:`rewardq.storage.seal.seal_run`.
- :func:`list_runs`, :func:`run_scores`, :func:`step_stats`, :func:`sample_history` — the reads behind
  ``rewardq audit``; :func:`paired_scores` and :func:`diff_scores` behind ``rewardq audit diff``;
  :func:`run_health` behind ``rewardq audit health`` (:mod:`.health_metrics` serves it to Prometheus).
- :func:`run_exists`, :func:`stored_scores` — what a resumed ``rewardq score`` run already holds.
- :func:`verify_run` checks a run's hash chain (``rewardq audit verify``).

Functions take a connection and never commit; the caller owns the transaction. Nothing here connects
at import. See docs/audit.md.
"""

from __future__ import annotations

from rewardq.storage.diff import Disagreement, PairedScore, RewardDiff, diff_scores, paired_scores
from rewardq.storage.engine import make_engine
from rewardq.storage.health import Agreement, RewardStep, RunHealth, run_health
from rewardq.storage.migrate import current, downgrade, head, upgrade
from rewardq.storage.models import Base, ScoreRow, scores_table
from rewardq.storage.queries import (
    FINAL_STATUSES,
    RunSummary,
    ScoreRecord,
    list_runs,
    run_exists,
    run_scores,
    sample_history,
    stored_scores,
)
from rewardq.storage.rows import COLUMNS, REQUIRED
from rewardq.storage.signals import Drift, DriftTest
from rewardq.storage.stats import StepStats, step_stats
from rewardq.storage.verify import ChainReport, verify_run
from rewardq.storage.writer import InvalidScoreRow, write_scores

__all__ = [
    "COLUMNS",
    "FINAL_STATUSES",
    "REQUIRED",
    "Agreement",
    "Base",
    "ChainReport",
    "Disagreement",
    "Drift",
    "DriftTest",
    "InvalidScoreRow",
    "PairedScore",
    "RewardDiff",
    "RewardStep",
    "RunHealth",
    "RunSummary",
    "ScoreRecord",
    "ScoreRow",
    "StepStats",
    "current",
    "diff_scores",
    "downgrade",
    "head",
    "list_runs",
    "make_engine",
    "paired_scores",
    "run_exists",
    "run_health",
    "run_scores",
    "sample_history",
    "scores_table",
    "step_stats",
    "stored_scores",
    "upgrade",
    "verify_run",
    "write_scores",
]
