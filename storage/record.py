"""Writing one task's audit rows and reading back what the store holds for its samples, in one
transaction, retried while the store's failure is transient (:func:`rewardq.storage.errors.is_transient`).

The rows of an earlier delivery win over this one's (the writer skips a stored key), so what is read
back is what the task answers: a redelivered task of a non-deterministic reward returns the first,
audited values. Only the transaction is retried, never the scoring that made the rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError

from rewardq.storage.errors import is_transient
from rewardq.storage.models import scores_table
from rewardq.storage.writer import write_scores
from rewardq.wire.schema import Status

log = logging.getLogger(__name__)

Stored = tuple[float | None, Status, str | None]
"""A stored score as a task answers it: (value, status, error); the table's check allows only a Status."""


def record_scores(
    engine: Engine,
    rows: Sequence[dict[str, Any]],
    *,
    chain_key: bytes | None,
    retry_s: float,
) -> dict[int, Stored]:
    """Write ``rows`` (one task's: one batch, one reward, consecutive sample indexes) and return the
    stored (value, status, error) of their sample indexes. A transient failure retries the transaction
    with backoff (1, 2, 4 … 30 s) for up to ``retry_s`` seconds; a permanent one raises at once."""
    if not rows:
        return {}
    c = scores_table.c
    first = rows[0]
    indexes = [row["sample_index"] for row in rows]
    stored = (
        select(c.sample_index, c.value, c.status, c.error)
        .where(c.batch_id == first["batch_id"], c.reward == first["reward"])
        .where(c.sample_index.between(min(indexes), max(indexes)))
    )
    deadline = time.monotonic() + retry_s
    delay, attempt = 1.0, 0
    while True:
        attempt += 1
        try:
            with engine.begin() as conn:
                write_scores(conn, rows, chain_key=chain_key)
                return {r.sample_index: (r.value, r.status, r.error) for r in conn.execute(stored)}
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
