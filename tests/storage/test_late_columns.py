"""The columns of migration 0006 (a row's group key, its step scores and ends): rows sealed before them
verify as they did, and once set they are chained like every other column."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select, text, update

from rewardq.storage import make_engine, upgrade, verify_run, write_scores
from rewardq.storage.chain import GENESIS, UNKEYED, link
from rewardq.storage.models import RunHead, scores_table
from rewardq.storage.rows import COLUMNS, LATE_COLUMNS
from rewardq.storage.seal import seal_run

MakeRow = Callable[..., dict[str, Any]]
BEFORE = [c for c in COLUMNS if c not in LATE_COLUMNS]


def _problems(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return verify_run(conn, "run-a").problems


def test_the_late_columns_are_the_last_a_writer_gives() -> None:
    assert COLUMNS[-len(LATE_COLUMNS) :] == LATE_COLUMNS


def test_a_row_sealed_before_migration_0006_still_verifies(database_url: str, make_row: MakeRow) -> None:
    upgrade(database_url, "0005")
    engine = make_engine(database_url)
    try:
        row = make_row(0, created_at=datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC))
        with engine.begin() as conn:  # written and sealed as the code before 0006 did
            conn.execute(insert(scores_table).values({c: row[c] for c in BEFORE}))
            back = conn.execute(select(*(scores_table.c[c] for c in BEFORE))).one()
            content = orjson.dumps(
                [
                    v.astimezone(UTC).isoformat(timespec="microseconds") if isinstance(v, datetime) else v
                    for v in back
                ]
            )
            digest = link(GENESIS, content, None)
            conn.execute(update(scores_table).values(chain_seq=1, chain_hash=digest))
            conn.execute(insert(RunHead).values(run_id="run-a", seq=1, head=digest, key_id=UNKEYED))
        upgrade(database_url)
        assert _problems(engine) == []
        with engine.begin() as conn:  # a group key slipped in afterwards is an edit
            conn.execute(text("UPDATE scores SET group_key = 'g:forged'"))
        assert len(found := _problems(engine)) == 1 and "was edited" in found[0]
    finally:
        engine.dispose()


def test_group_keys_and_steps_are_chained(engine: Engine, make_row: MakeRow) -> None:
    rows = [make_row(i, group_key="g:u1", step_scores="[0.5, 1.0]", step_ends="[4, 9]") for i in range(3)]
    with engine.begin() as conn:
        write_scores(conn, rows)
    assert seal_run(engine, "run-a", None) == 3
    assert _problems(engine) == []
    with engine.begin() as conn:
        conn.execute(text("UPDATE scores SET step_scores = '[1.0, 1.0]' WHERE sample_index = 1"))
    assert len(found := _problems(engine)) == 1 and "was edited" in found[0]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE scores SET step_scores = '[0.5, 1.0]', group_key = NULL WHERE sample_index = 1")
        )
    assert len(found := _problems(engine)) == 1 and "was edited" in found[0]
