"""The audit's hash chain: a run's score rows, in the order they were written, each sealing the last.

Every row gets ``chain_seq`` (1, 2, … within its run) and ``chain_hash`` = H(previous row's hash,
the row's content), H being SHA-256, or HMAC-SHA-256 when an audit key is configured
(``REWARDQ_AUDIT_KEY``). ``run_heads`` keeps each run's last seq and hash, so that rows cut off
the end are missed too. The content is every column a writer gives (``COLUMNS``), so editing any of
them, deleting, inserting or reordering rows breaks the chain where it happened
(:func:`rewardq.storage.verify.verify_run` says where and how).

The head also keeps the run's ``key_id`` (:func:`key_id`), set when its first row is written, so that
verifying with another key is told as that, not as every row edited.

Writers of one run take turns: :func:`claim_heads` locks the run's head row (PostgreSQL row lock;
SQLite's single writer lock) until the transaction ends, so concurrent workers keep one valid chain.
Without a key anyone who can write the database can recompute a chain; with one, only key holders.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, text

GENESIS = "0" * 64
"""The hash a run's first row links to."""

UNKEYED = "sha256"
"""The ``key_id`` of a run sealed without a key (plain SHA-256)."""

_KEY_ID_MESSAGE = b"rewardq audit key id"

_CLAIM = text(
    "INSERT INTO run_heads (run_id, seq, head, key_id) VALUES (:run, 0, :genesis, :key_id) "
    "ON CONFLICT (run_id) DO UPDATE SET seq = run_heads.seq RETURNING seq, head"
)
_ADVANCE = text("UPDATE run_heads SET seq = :seq, head = :head WHERE run_id = :run")
_STORED = text(
    "SELECT sample_index FROM scores WHERE batch_id = :batch AND reward = :reward "
    "AND sample_index IN :indexes"
).bindparams(bindparam("indexes", expanding=True))


def canonical(values: Sequence[Any]) -> bytes:
    """A row's content as bytes: its values in COLUMNS order, timestamps as UTC ISO with microseconds."""
    return orjson.dumps(
        [
            v.astimezone(UTC).isoformat(timespec="microseconds") if isinstance(v, datetime) else v
            for v in values
        ]
    )


def link(previous: str, content: bytes, key: bytes | None) -> str:
    """The hash sealing ``content`` after the row whose hash is ``previous``."""
    message = previous.encode() + b"\n" + content
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def key_id(key: bytes | None) -> str:
    """Which key seals a chain, safe to store and print: :data:`UNKEYED` without one, else the first 16
    hex digits of HMAC-SHA-256(key, a constant), which tells keys apart without revealing them."""
    if key is None:
        return UNKEYED
    return hmac.new(key, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


def claim_heads(
    connection: Connection, runs: Sequence[str], key: bytes | None = None
) -> dict[str, tuple[int, str]]:
    """Lock each run's head (creating it at seq 0, sealed by ``key``) and return its (seq, hash); runs
    in sorted order, so that two writers never wait on each other's locks in a cycle."""
    heads = {}
    ident = key_id(key)
    for run in sorted(set(runs)):
        seq, head = connection.execute(_CLAIM, {"run": run, "genesis": GENESIS, "key_id": ident}).one()
        heads[run] = (int(seq), str(head))
    return heads


def advance(connection: Connection, heads: dict[str, tuple[int, str]]) -> None:
    """Store each run's new last (seq, hash)."""
    for run, (seq, head) in heads.items():
        connection.execute(_ADVANCE, {"run": run, "seq": seq, "head": head})


def stored_indexes(connection: Connection, batch_id: str, reward: str, indexes: Sequence[int]) -> set[int]:
    """Which of ``indexes`` of (batch, reward) the store already holds."""
    rows = connection.execute(_STORED, {"batch": batch_id, "reward": reward, "indexes": list(indexes)})
    return {int(r[0]) for r in rows}
