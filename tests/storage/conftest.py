"""Fixtures of the audit-store tests: a migrated engine per backend and a factory of valid rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from rewardq.storage import make_engine, scores_table, upgrade
from tests.score_rows import score_row


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
    return score_row


@pytest.fixture
def count_scores() -> Callable[[Engine], int]:
    """``count_scores(engine)``: how many rows ``scores`` holds."""

    def count(engine: Engine) -> int:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(scores_table)) or 0)

    return count
