"""Migrations on SQLite and the real PostgreSQL: from empty to head, model parity, concurrent upgrades."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from rewardq.storage import Base, current, downgrade, head, make_engine, scores_table, upgrade
from rewardq.storage.migrate import MIGRATIONS_DIR
from rewardq.wire.schema import STATUSES


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert head() == "0006"


def test_upgrade_from_empty_reaches_head(database_url: str) -> None:
    assert current(database_url) is None
    upgrade(database_url)
    assert current(database_url) == head()
    upgrade(database_url)  # again: nothing to do
    assert current(database_url) == head()
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) == {"scores", "run_heads", "alembic_version"}
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(database_url: str) -> None:
    upgrade(database_url)
    downgrade(database_url, "base")
    assert current(database_url) is None
    engine = make_engine(database_url)
    try:
        assert not inspect(engine).has_table("scores")
    finally:
        engine.dispose()
    upgrade(database_url)
    assert current(database_url) == head()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    """Alembic's autogenerate diff of the migrated database against the models is empty."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []


def _where(value: Any) -> str | None:
    return None if value is None else re.sub(r"[()\s]", "", str(value)).lower()


def test_migrated_indexes_and_checks_match_the_models(engine: Engine) -> None:
    """What autogenerate does not compare: index methods, partial-index conditions, CHECK constraints."""
    dialect = engine.dialect.name
    with engine.connect() as conn:
        inspector = inspect(conn)
        reflected = {
            ix["name"]: ix for ix in inspector.get_indexes("scores") if not ix.get("duplicates_constraint")
        }
        checks = inspector.get_check_constraints("scores")
    model = {ix.name: ix for ix in scores_table.indexes}
    assert set(reflected) == set(model)
    for name, ix in model.items():
        got = reflected[name]
        assert got["column_names"] == [c.name for c in ix.columns], name
        assert bool(got["unique"]) == ix.unique, name
        options = got.get("dialect_options", {})
        if dialect == "postgresql":
            assert options.get("postgresql_using", "btree") == (
                ix.dialect_options["postgresql"]["using"] or "btree"
            )
        assert _where(options.get(f"{dialect}_where")) == _where(ix.dialect_options[dialect]["where"]), name
    assert [c["name"] for c in checks] == ["ck_scores_status"]
    assert re.findall(r"'([^']*)'", checks[0]["sqltext"]) == list(STATUSES)


UPGRADER = textwrap.dedent(
    """
    import sys, time
    from alembic import command
    from rewardq.storage import upgrade

    url, start = sys.argv[1], float(sys.argv[2])
    alembic_upgrade = command.upgrade

    def slow_upgrade(*args, **kwargs):
        # Widen the race: each process dawdles after taking the lock and before reading the version,
        # so without the lock all three would find an empty database and create the tables at once.
        time.sleep(0.5)
        alembic_upgrade(*args, **kwargs)

    command.upgrade = slow_upgrade
    time.sleep(max(0.0, start - time.time()))
    upgrade(url)
    """
)


def test_concurrent_upgrades_from_three_processes(database_url: str) -> None:
    start = time.time() + 2.0  # all three past their imports, then upgrading at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADER, database_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert current(database_url) == head()
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head()]
            assert conn.execute(text("SELECT count(*) FROM scores")).scalar() == 0
    finally:
        engine.dispose()
