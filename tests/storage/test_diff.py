"""``paired_scores`` and ``diff_scores``: the same samples under two runs or two scorer versions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from rewardq.storage import diff_scores, paired_scores, write_scores
from rewardq.storage.diff import pearson, ranks
from tests.storage.conftest import sha256


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
