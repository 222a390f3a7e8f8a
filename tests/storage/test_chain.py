"""The audit's hash chain on SQLite and the real PostgreSQL: rows written unsealed, chained by the sealer
(seal_run), checked by verify_run, which says which row was edited, deleted, inserted or reordered and
which are not sealed yet."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from rewardq.storage import make_engine, upgrade, verify_run, write_scores
from rewardq.storage.chain import key_id
from rewardq.storage.seal import WrongSealKey, seal_run, unsealed_runs

MakeRow = Callable[..., dict[str, Any]]


def write_batches(
    engine: Engine, make_row: MakeRow, batches: int = 3, size: int = 4, key: bytes | None = None
) -> None:
    """Write ``batches`` batches of run-a, then seal them."""
    for b in range(batches):
        with engine.begin() as conn:
            write_scores(conn, [make_row(i, batch_id=f"b{b}", value=i / 8) for i in range(size)])
    assert seal_run(engine, "run-a", key) == batches * size


def problems(engine: Engine, run: str = "run-a", key: bytes | None = None) -> list[str]:
    with engine.connect() as conn:
        return verify_run(conn, run, key).problems


def ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM scores ORDER BY chain_seq"))]


def sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_rows_are_chained_in_order_and_redelivery_adds_nothing(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row)
    with engine.begin() as conn:  # a redelivered batch: nothing new, the chain untouched
        assert write_scores(conn, [make_row(i, batch_id="b1") for i in range(4)]) == 0
    with engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text("SELECT chain_seq FROM scores ORDER BY id"))]
        report = verify_run(conn, "run-a")
    assert seqs == list(range(1, 13))
    assert report.intact and report.rows == 12 and report.head_seq == 12 and report.unsealed == []
    assert seal_run(engine, "run-a", None) == 0


def test_unsealed_rows_are_named_as_such_not_as_tampered(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row, batches=1)
    with engine.begin() as conn:
        write_scores(conn, [make_row(i, batch_id="late") for i in range(2)])
        late = [r[0] for r in conn.execute(text("SELECT id FROM scores WHERE batch_id = 'late' ORDER BY id"))]
    with engine.connect() as conn:
        report = verify_run(conn, "run-a")
        assert unsealed_runs(conn) == ["run-a"]
    assert report.intact and report.problems == [] and report.head_seq == 4
    assert report.unsealed == [
        f"row id {late[0]} (seq None, batch late, sample 0, reward accuracy)",
        f"row id {late[1]} (seq None, batch late, sample 1, reward accuracy)",
    ]
    assert seal_run(engine, "run-a", None) == 2
    with engine.connect() as conn:
        report = verify_run(conn, "run-a")
        assert unsealed_runs(conn) == []
    assert report.intact and report.unsealed == [] and report.head_seq == 6


def test_a_sealer_with_another_key_seals_nothing(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row, batches=1, key=b"k1")
    with engine.begin() as conn:
        write_scores(conn, [make_row(9, batch_id="late")])
    with pytest.raises(WrongSealKey, match="sealed with key id"):
        seal_run(engine, "run-a", b"k2")
    with engine.connect() as conn:
        report = verify_run(conn, "run-a", b"k1")
    assert report.intact and len(report.unsealed) == 1


def test_an_edited_row_is_named(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row)
    target = ids(engine)[5]
    sql(engine, "UPDATE scores SET value = 1.0 WHERE id = :i", i=target)
    found = problems(engine)
    assert len(found) == 1 and found[0].startswith(f"row id {target} (seq 6") and "was edited" in found[0]


def test_a_deleted_row_and_a_deleted_tail_are_named(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row)
    all_ids = ids(engine)
    sql(engine, "DELETE FROM scores WHERE id = :i", i=all_ids[3])
    assert problems(engine) == [
        f"1 row(s) deleted before row id {all_ids[4]} (seq 5, batch b1, sample 0, "
        "reward accuracy) (seq 4 missing)"
    ]
    sql(engine, "DELETE FROM scores WHERE id IN (:a, :b)", a=all_ids[10], b=all_ids[11])
    assert "the run's last 2 row(s) were deleted (its head is at seq 12)" in problems(engine)


def test_an_inserted_row_is_named(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scores (run_id, step, batch_id, sample_index, sample_hash, reward, scorer,"
                " value, status, latency_ms, attempts, worker_host, created_at)"
                " SELECT run_id, step, 'forged', sample_index, sample_hash, reward, scorer, 1.0, status,"
                " latency_ms, attempts, worker_host, created_at FROM scores WHERE chain_seq = 2"
            )
        )
        forged = conn.execute(text("SELECT id FROM scores WHERE batch_id = 'forged'")).scalar_one()
    with engine.connect() as conn:
        report = verify_run(conn, "run-a")
    assert report.problems == [] and report.unsealed == [
        f"row id {forged} (seq None, batch forged, sample 1, reward accuracy)"
    ]
    sql(engine, "UPDATE scores SET chain_seq = 7, chain_hash = :h WHERE id = :i", h="f" * 64, i=forged)
    assert any("repeats seq 7" in p and "inserted" in p for p in problems(engine))


def test_reordered_rows_are_named(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row)
    a, b = ids(engine)[2:4]
    sql(engine, "UPDATE scores SET chain_seq = -chain_seq WHERE id IN (:a, :b)", a=a, b=b)
    sql(engine, "UPDATE scores SET chain_seq = 4 WHERE id = :a", a=a)
    sql(engine, "UPDATE scores SET chain_seq = 3 WHERE id = :b", b=b)
    found = problems(engine)
    assert found == [
        f"row id {b} (seq 3, batch b0, sample 3, reward accuracy) is out of order (reordered): it was "
        f"written after row id {a} (seq 4, batch b0, sample 2, reward accuracy)",
        f"row id {a} (seq 4, batch b0, sample 2, reward accuracy) is out of order (reordered): it was "
        f"written after row id {ids(engine)[1]} (seq 2, batch b0, sample 1, reward accuracy)",
    ]


def report(engine: Engine, key: bytes | None) -> tuple[str | None, list[str]]:
    with engine.connect() as conn:
        result = verify_run(conn, "run-a", key)
    return result.wrong_key, result.problems


def test_another_key_is_named_once_not_as_every_row_edited(engine: Engine, make_row: MakeRow) -> None:
    write_batches(engine, make_row, batches=1, key=b"s3cret")
    assert report(engine, b"s3cret") == (None, [])
    sealed = key_id(b"s3cret")
    assert report(engine, b"other") == (
        f"the key does not match the run's seal (sealed with key id {sealed}, "
        f"this key's id is {key_id(b'other')})",
        [],
    )
    assert report(engine, None) == (
        f"the run was sealed with a key (key id {sealed}), but no key was given",
        [],
    )
    sql(engine, "UPDATE scores SET value = 0.5 WHERE chain_seq = 2")  # an edit is still an edit
    wrong_key, found = report(engine, b"s3cret")
    assert wrong_key is None and len(found) == 1 and "was edited" in found[0]


def test_an_unkeyed_run_named_with_a_key_and_a_run_from_before_key_ids(
    engine: Engine, make_row: MakeRow
) -> None:
    write_batches(engine, make_row, batches=1)
    assert report(engine, b"k") == (
        "the run was sealed without a key (plain SHA-256), but a key was given",
        [],
    )
    sql(engine, "UPDATE run_heads SET key_id = NULL")  # begun before migration 0004: rows checked
    wrong_key, found = report(engine, b"k")
    assert wrong_key is None and len(found) == 4


def _writer(url: str, worker: int, batches: int) -> None:
    """Write ``batches`` batches of run "shared", sealing the run after each one, as workers do."""
    from rewardq.storage import make_engine, write_scores
    from rewardq.storage.seal import seal_run
    from tests.score_rows import score_row, sha256

    engine = make_engine(url)
    for b in range(batches):
        rows = [
            score_row(
                i,
                run_id="shared",
                batch_id=f"w{worker}-{b}",
                sample_hash=sha256(f"{worker}/{b}/{i}"),
                worker_host=f"w{worker}",
            )
            for i in range(8)
        ]
        with engine.begin() as conn:
            write_scores(conn, rows)
        seal_run(engine, "shared", None)
    engine.dispose()


def test_concurrent_writers_and_sealers_of_one_run_keep_one_valid_chain(database_url: str) -> None:
    upgrade(database_url)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_writer, args=(database_url, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    engine = make_engine(database_url)
    try:
        seal_run(engine, "shared", None)  # what the last sealers found held by another
        with engine.connect() as conn:
            report = verify_run(conn, "shared")
            seqs = sorted(r[0] for r in conn.execute(text("SELECT chain_seq FROM scores")))
    finally:
        engine.dispose()
    assert report.rows == 4 * 15 * 8 and report.intact and report.unsealed == [], report.problems[:5]
    assert seqs == list(range(1, 4 * 15 * 8 + 1))


def test_a_sealer_creating_a_run_head_waits_for_a_writer_that_committed_meanwhile(
    engine: Engine, database_url: str, make_row: MakeRow
) -> None:
    """A run's first seal creates its head while another worker commits rows: the sealer waits for the
    lock instead of failing (SQLite fails at once a transaction that has read, then wants to write)."""
    other = make_engine(database_url)
    committed: list[bool] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _commit_elsewhere_first(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO run_heads") and not committed:
            committed.append(True)
            with other.begin() as meanwhile:
                write_scores(meanwhile, [make_row(0, run_id="run-b", batch_id="b-other")])

    with engine.begin() as conn:
        write_scores(conn, [make_row(i) for i in range(3)])
    try:
        assert seal_run(engine, "run-a", None) == 3
    finally:
        other.dispose()
    assert committed
    with engine.connect() as conn:
        assert unsealed_runs(conn) == ["run-b"]
    assert problems(engine) == []


def test_two_sealers_at_once_make_one_chain(engine: Engine, make_row: MakeRow) -> None:
    """The second sealer of a run, while the first holds it, seals nothing (PostgreSQL: it skips the
    locked head; SQLite: it waits for the first's lock, then finds nothing left)."""
    write_batches(engine, make_row, batches=1, size=2)  # the run's head exists
    with engine.begin() as conn:
        write_scores(conn, [make_row(i, batch_id="b9") for i in range(5)])
    with engine.connect() as first:
        first.execution_options(sqlite_begin="IMMEDIATE")
        with first.begin():
            from rewardq.storage.seal import seal_pass

            assert seal_pass(first, "run-a", None, 100) == 5
            if engine.dialect.name == "postgresql":
                assert seal_run(engine, "run-a", None) is None
        assert seal_run(engine, "run-a", None) == 0
    with engine.connect() as conn:
        report = verify_run(conn, "run-a")
    assert report.intact and report.head_seq == 7 and report.unsealed == []


def test_a_writer_never_waits_for_another_writer_of_its_run(engine: Engine, make_row: MakeRow) -> None:
    """Two transactions writing one run at once both commit (PostgreSQL; SQLite has one writer)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes all writers of a file")
    with engine.connect() as first, first.begin():
        write_scores(first, [make_row(i, batch_id="first") for i in range(3)])
        with engine.begin() as second:  # while the first is open: fails at once if it must wait
            second.execute(text("SET LOCAL lock_timeout = '1ms'"))
            assert write_scores(second, [make_row(i, batch_id="second") for i in range(3)]) == 3
    assert seal_run(engine, "run-a", None) == 6


@pytest.fixture(autouse=True)
def _dispose(engine: Engine) -> None:
    """Every test here uses the migrated engine of tests/storage/conftest.py."""
