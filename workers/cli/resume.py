"""What an interrupted ``rewardq score`` run already left in the audit, for the rerun to skip.

A score counts as done when the audit holds, for the same run, a final score (``ok`` or
``unscorable``) of a sample with the same content hash by the same reward with the same scorer
fingerprint as the workers serve it with now (``RewardClient.scorers``: what live workers announce, or
the embedded worker's own), not one computed from a local config the workers may not share. A reward
whose fingerprint is unknown (no live worker announces one) is not resumed: all of it is sent. A store
that has no score of the run, or no ``scores`` table yet, costs one query at start and none per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from rewardq.rescore import Stored
from rewardq.samples import to_samples
from rewardq.storage.rows import sample_hash
from rewardq.wire.schema import Status
from rewardq.wire.settings import Settings


class AuditScores:
    """:class:`rewardq.rescore.StoredScores` read from the audit store of ``settings``."""

    def __init__(self, settings: Settings, run_id: str, fingerprints: Mapping[str, str | None]) -> None:
        from sqlalchemy import inspect

        from rewardq.storage import make_engine, run_exists

        self.run_id = run_id
        self.fingerprints = {name: fp for name, fp in fingerprints.items() if fp is not None}
        self._engine = make_engine(settings.database_url)
        with self._engine.connect() as conn:
            self.active = inspect(conn).has_table("scores") and run_exists(conn, run_id)

    def lookup(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Stored | None]]:
        if not self.active or not self.fingerprints:
            return {}
        from rewardq.storage import stored_scores

        hashes = [sample_hash(wire) for wire in to_samples(rows, max_record_bytes=None)]
        with self._engine.connect() as conn:
            found = stored_scores(conn, self.run_id, self.fingerprints, set(hashes))
        if not found:
            return {}
        return {reward: [_stored(found.get((h, reward))) for h in hashes] for reward in self.fingerprints}

    def close(self) -> None:
        self._engine.dispose()


def _stored(hit: tuple[float | None, Status, str | None, str | None] | None) -> Stored | None:
    if hit is None:
        return None
    value, status, error, steps = hit
    return Stored(value, status, error, None if steps is None else orjson.loads(steps))
