"""``paired_scores`` and ``diff_scores``: the same samples under two runs or two scorer versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from rewardq.storage import diff_scores, make_engine, paired_scores, upgrade, write_scores
from rewardq.storage.diff import PairedScore, pearson, ranks
from tests.score_rows import sha256


def write(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        write_scores(conn, rows)


def test_flip_rate_mean_delta_correlations_and_largest_disagreements(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    a = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    b = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    write(engine, [make_row(i, run_id="old", batch_id="a", value=v) for i, v in enumerate(a)])
    write(engine, [make_row(i, run_id="new", batch_id="b", value=v) for i, v in enumerate(b)])
    write(engine, [make_row(9, run_id="new", batch_id="b9")])  # only in one run: not paired
    with engine.connect() as conn:
        [diff] = diff_scores(paired_scores(conn, "old", "new"), top=5)
    assert (diff.reward, diff.paired, diff.both_ok) == ("accuracy", 6, 6)
    assert diff.flips == 2 and diff.flip_rate == pytest.approx(2 / 6)
    assert diff.mean_delta == pytest.approx(0.0)
    assert diff.pearson == pytest.approx(1 / 3)
    assert diff.spearman == pytest.approx(1 / 3)
    assert sorted((d.sample_hash, d.delta) for d in diff.largest) == sorted(
        [(sha256("sample 1"), -1.0), (sha256("sample 3"), 1.0)]
    )


def test_continuous_rewards_have_no_flip_rate_and_status_changes_are_counted(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    write(engine, [make_row(i, run_id="a", batch_id="a", value=0.1 * i) for i in range(4)])
    write(
        engine,
        [make_row(i, run_id="b", batch_id="b", value=0.2 * i) for i in range(3)]
        + [make_row(3, run_id="b", batch_id="b", value=None, status="error", error="judge down")],
    )
    with engine.connect() as conn:
        [diff] = diff_scores(paired_scores(conn, "a", "b"))
    assert diff.flip_rate is None and diff.flips is None
    assert (diff.paired, diff.both_ok) == (4, 3)
    assert diff.status_changes == {"ok→error": 1}
    assert diff.pearson == pytest.approx(1.0)
    assert diff.largest[0].delta == pytest.approx(0.2)


def test_one_run_rescored_by_two_scorer_versions_latest_score_per_side(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    v1, v2 = "math@1:aaaaaaaaaaaa", "math@2:bbbbbbbbbbbb"
    write(engine, [make_row(i, run_id="r", batch_id="x1", scorer=v1, value=0.0) for i in range(3)])
    write(engine, [make_row(i, run_id="r", batch_id="x2", scorer=v1, value=1.0) for i in range(3)])  # later
    write(engine, [make_row(i, run_id="r", batch_id="y", scorer=v2, value=1.0) for i in range(3)])
    with engine.connect() as conn:
        [diff] = diff_scores(paired_scores(conn, "r", "r", scorer_a="math@1", scorer_b="math@2"))
        assert list(paired_scores(conn, "r", "r", rewards=["format"])) == []
    assert diff.paired == 3 and diff.flips == 0 and diff.mean_delta == 0.0


def test_ranks_average_ties_and_constant_sides_have_no_correlation() -> None:
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert pearson([1.0, 1.0], [0.0, 1.0]) is None
    assert pearson([1.0], [2.0]) is None


def test_pairing_reads_each_run_through_its_index_on_a_table_never_analysed(
    postgres_url: str, make_row: Callable[..., dict[str, Any]]
) -> None:
    """Without statistics (a fresh store, autovacuum not yet round) the plan must not hang on estimates:
    each statement run is one run's rows read through a run_id index, with no join whose method the
    planner picks from row counts it guesses (main's join of the two runs went from 1.8 s to 15 s).
    Asserted on PostgreSQL's own EXPLAIN of each statement ``paired_scores`` ran."""
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE scores SET (autovacuum_enabled = false)")
    for run in range(10):
        write(engine, [make_row(i, run_id=f"run-{run}", batch_id=f"b{run}") for i in range(2000)])
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'scores'").scalar() == -1
        event.listen(conn, "before_cursor_execute", record)
        pairs = list(paired_scores(conn, "run-0", "run-1"))
        event.remove(conn, "before_cursor_execute", record)
        plans = [
            "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            for statement, parameters in statements
        ]
    engine.dispose()
    assert len(pairs) == 2000 and plans
    for plan in plans:
        assert "Seq Scan" not in plan and "Join" not in plan and "Nested Loop" not in plan, plan
        assert "Index Cond: ((run_id)::text" in plan, plan  # either (run_id, …) index


def test_a_binary_reward_is_plotted_as_transition_counts_and_a_constant_side_is_named(
    tmp_path: Path,
) -> None:
    values = [(1.0, 1.0)] * 5 + [(1.0, 0.0)] * 2 + [(0.0, 1.0)] * 3
    binary = [PairedScore(f"h{i}", None, "acc", a, "ok", b, "ok") for i, (a, b) in enumerate(values)]
    constant = [PairedScore(f"h{i}", None, "fmt", 1.0, "ok", 1.0, "ok") for i in range(4)]
    wide = [PairedScore(f"h{i}", None, "rm", i / 20, "ok", i / 19, "ok") for i in range(20)]
    acc, fmt, rm = diff_scores([*binary, *constant, *wide])
    t = acc.transitions()
    assert t is not None
    assert (t.values_a, t.values_b, t.counts) == ([0.0, 1.0], [0.0, 1.0], [[0, 3], [2, 5]])
    assert acc.why_no_correlation() is None
    assert fmt.pearson is None
    assert fmt.why_no_correlation("run-1", "run-2") == "both run-1 and run-2 are constant"
    assert rm.transitions() is None  # 20 distinct values: a scatter
    pytest.importorskip("matplotlib")
    from rewardq.workers.cli.diff_plot import plot_diffs

    written = plot_diffs([acc, fmt, rm], tmp_path / "diff.png", label_a="a", label_b="b")
    assert [p.name for p in written] == ["diff-acc.png", "diff-fmt.png", "diff-rm.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_why_a_correlation_is_missing() -> None:
    one = diff_scores([PairedScore("h", None, "r", 1.0, "ok", 0.0, "ok")])[0]
    assert one.why_no_correlation() == "1 sample(s) scored ok on both sides, correlation needs 2"
    pairs = [PairedScore(f"h{i}", None, "r", float(i), "ok", 0.5, "ok") for i in range(3)]
    assert diff_scores(pairs)[0].why_no_correlation("A", "B") == "B is constant"
