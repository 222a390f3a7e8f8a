"""Writing audit rows and answering with what the store holds for their samples, in one transaction,
retried while the store's failure is transient (:func:`rewardq.storage.errors.is_transient`).

The rows of an earlier delivery win over this one's (the writer skips a stored key), so the answer is
what the audit holds: a redelivered task of a non-deterministic reward returns the first, audited
values. The write is one statement and the commit; only when it inserted fewer rows than it was given
(a redelivery) are the rows read back. Several tasks' rows (a coalesced flush) go in one call. Only
the transaction is retried, never the scoring that made the rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.exc import DBAPIError

from rewardq.storage.errors import is_transient
from rewardq.storage.models import scores_table
from rewardq.storage.writer import write_scores
from rewardq.wire.schema import Status

log = logging.getLogger(__name__)

Stored = tuple[float | None, Status, str | None, str | None, str | None]
"""A stored score as a task answers it: (value, status, error, step scores, step ends), the steps as the
audit keeps them (JSON lists, or None); the table's check allows only a Status."""

Key = tuple[str, str, int]
"""Which score: (batch_id, reward, sample_index), the table's unique key."""


def record_scores(engine: Engine, rows: Sequence[dict[str, Any]], *, retry_s: float) -> dict[Key, Stored]:
    """Write ``rows`` (one task's, or several tasks') and return the stored score (:data:`Stored`) of
    each of their keys. A transient failure retries the transaction with backoff (1, 2, 4 … 30 s) for
    up to ``retry_s`` seconds; a permanent one raises at once."""
    if not rows:
        return {}
    deadline = time.monotonic() + retry_s
    delay, attempt = 1.0, 0
    while True:
        attempt += 1
        try:
            with engine.begin() as conn:
                if write_scores(conn, rows) == len(rows):
                    return {_key(row): _given(row) for row in rows}
                return _read_back(conn, rows)
        except DBAPIError as e:
            if not is_transient(e):
                log.error("audit write refused, not retried: %s", e)
                raise
            if time.monotonic() + delay > deadline:
                log.error("audit write failed %d times in %.0fs, giving up: %s", attempt, retry_s, e)
                raise
            log.warning("audit write failed (attempt %d), retrying in %.0fs: %s", attempt, delay, e)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def _key(row: dict[str, Any]) -> Key:
    return row["batch_id"], row["reward"], row["sample_index"]


def _given(row: dict[str, Any]) -> Stored:
    """A row as it was inserted, so as the store holds it (an ``ok`` value is stored as a float)."""
    value = row.get("value")
    return (
        None if value is None else float(value),
        row["status"],
        row.get("error"),
        row.get("step_scores"),
        row.get("step_ends"),
    )


def _read_back(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[Key, Stored]:
    """What the store holds for the keys of ``rows``: one range of sample indexes per (batch, reward)."""
    c = scores_table.c
    spans: dict[tuple[str, str], list[int]] = {}
    for batch, reward, index in map(_key, rows):
        spans.setdefault((batch, reward), []).append(index)
    query = select(
        c.batch_id, c.reward, c.sample_index, c.value, c.status, c.error, c.step_scores, c.step_ends
    ).where(
        or_(
            *(
                and_(c.batch_id == batch, c.reward == reward, c.sample_index.between(min(ix), max(ix)))
                for (batch, reward), ix in spans.items()
            )
        )
    )
    return {
        (r.batch_id, r.reward, r.sample_index): (r.value, r.status, r.error, r.step_scores, r.step_ends)
        for r in conn.execute(query)
    }
