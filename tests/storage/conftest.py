"""Fixtures of the audit-store tests: a migrated engine per backend and a factory of valid rows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from rewardq.storage import make_engine, scores_table, upgrade


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a freshly migrated audit store (SQLite file or real PostgreSQL database)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def make_row() -> Callable[..., dict[str, Any]]:
    """``make_row(i, **overrides)``: a valid ``ok`` row for sample ``i`` of batch ``b1`` of run ``run-a``."""

    def make(i: int = 0, **overrides: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "run_id": "run-a",
            "step": 0,
            "batch_id": "b1",
            "sample_index": i,
            "sample_hash": sha256(f"sample {i}"),
            "sample_id": f"gsm8k-{i}",
            "reward": "accuracy",
            "scorer": "math@1:0123456789ab",
            "value": 1.0,
            "status": "ok",
            "error": None,
            "raw": None,
            "latency_ms": 12.5,
            "attempts": 1,
            "worker_host": "node-1",
            "worker_gpu": "0",
            "prompt_text": None,
            "completion_text": None,
            "truncated": None,
            "cache_hit": None,
            "http_attempts": None,
            "replica": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "template_hash": None,
        }
        row.update(overrides)
        return row

    return make


@pytest.fixture
def count_scores() -> Callable[[Engine], int]:
    """``count_scores(engine)``: how many rows ``scores`` holds."""

    def count(engine: Engine) -> int:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(scores_table)) or 0)

    return count
