"""The audit's hash chain: a run's score rows, in the order they were sealed, each sealing the last.

Every sealed row has ``chain_seq`` (1, 2, … within its run) and ``chain_hash`` = H(previous row's
hash, the row's content), H being SHA-256, or HMAC-SHA-256 when an audit key is configured
(``REWARDQ_AUDIT_KEY``). ``run_heads`` keeps each run's last seq and hash, so that rows cut off
the end are missed too. Rows are written unsealed and chained after they commit
(:mod:`rewardq.storage.seal`). The content is every column a writer gives (``COLUMNS``; the late ones
where set), so editing any of
them, deleting, inserting or reordering rows breaks the chain where it happened
(:func:`rewardq.storage.verify.verify_run` says where and how).

The head also keeps the run's ``key_id`` (:func:`key_id`), set when its first row is sealed, so that
verifying with another key is told as that, not as every row edited.

Without a key anyone who can write the database can recompute a chain; with one, only key holders.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from rewardq.storage.rows import LATE_COLUMNS

_LATE = len(LATE_COLUMNS)  # they are the last of COLUMNS (tests/storage/test_chain.py)

GENESIS = "0" * 64
"""The hash a run's first row links to."""

UNKEYED = "sha256"
"""The ``key_id`` of a run sealed without a key (plain SHA-256)."""

_KEY_ID_MESSAGE = b"rewardq audit key id"


def canonical(values: Sequence[Any]) -> bytes:
    """A row's content as bytes: its values in COLUMNS order, timestamps as UTC ISO with microseconds;
    the :data:`~rewardq.storage.rows.LATE_COLUMNS` only when one is set, so that a row sealed before
    they existed hashes as it did."""
    if all(v is None for v in values[-_LATE:]):
        values = values[:-_LATE]
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
