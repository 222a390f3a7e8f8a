"""The audit queries on SQLite and the real PostgreSQL, against numbers worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from rewardq.storage import list_runs, run_scores, sample_history, step_stats, write_scores
from rewardq.wire.schema import PARKED_SCORER, STATUSES, UNAVAILABLE_SCORER

MakeRow = Callable[..., dict[str, Any]]
T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def scored(engine: Engine, make_row: MakeRow) -> Engine:
    """Two runs. run-a: steps 0 and 1, rewards accuracy and format. run-b: one unnumbered batch.

    run-a step 0 accuracy: ok 1.0, 0.0, 1.0, 0.5, one error, one unscorable
    run-a step 0 format:   ok 0.5, three times
    run-a step 1 accuracy: ok 2.0, 4.0; one timeout
    run-a step 1 format:   two errors, no ok value
    run-b (no step) accuracy: sample 0 again (a rescoring of run-a's sample 0), ok 0.0
    """
    s0_acc = [("ok", 1.0), ("ok", 0.0), ("ok", 1.0), ("ok", 0.5), ("error", None), ("unscorable", None)]
    rows = [
        make_row(i, batch_id="a0", status=s, value=v, error=None if s == "ok" else f"{s}!", created_at=at(i))
        for i, (s, v) in enumerate(s0_acc)
    ]
    rows += [make_row(i, batch_id="a0", reward="format", value=0.5, created_at=at(10)) for i in range(3)]
    rows += [
        make_row(0, step=1, batch_id="a1", value=2.0, created_at=at(20)),
        make_row(1, step=1, batch_id="a1", value=4.0, created_at=at(21)),
        make_row(
            2, step=1, batch_id="a1", value=None, status="timeout", error="timed out", created_at=at(22)
        ),
    ]
    rows += [
        make_row(
            i,
            step=1,
            batch_id="a1",
            reward="format",
            value=None,
            status="error",
            error="boom",
            created_at=at(25),
        )
        for i in range(2)
    ]
    rows += [make_row(0, run_id="run-b", step=None, batch_id="b0", value=0.0, created_at=at(60))]
    with engine.begin() as conn:
        assert write_scores(conn, rows) == len(rows)
    return engine


def test_list_runs(scored: Engine) -> None:
    with scored.connect() as conn:
        runs = list_runs(conn)
    assert [r.run_id for r in runs] == ["run-a", "run-b"]
    a, b = runs
    assert (a.first_at, a.last_at) == (at(0), at(25))
    assert (a.step_min, a.step_max, a.scores, a.rewards) == (0, 1, 14, ("accuracy", "format"))
    assert a.mixed_scorers == b.mixed_scorers == ()
    assert (b.first_at, b.last_at) == (at(60), at(60))
    assert (b.step_min, b.step_max, b.scores, b.rewards) == (None, None, 1, ("accuracy",))


def test_list_runs_names_the_rewards_scored_by_more_than_one_scorer(
    engine: Engine, make_row: MakeRow
) -> None:
    rows = [make_row(i, reward="format", scorer="format@1:aaaaaaaaaaaa") for i in range(3)]
    rows += [make_row(i, reward="format", scorer="format@1:bbbbbbbbbbbb", batch_id="b2") for i in range(2)]
    rows += [make_row(i, batch_id="b3") for i in range(2)]  # accuracy: one scorer
    # rows no scorer wrote (a parked task, a reward that could not be built) are no second scorer
    rows += [make_row(2, batch_id="b4", scorer=PARKED_SCORER, status="error", value=None, error="parked")]
    rows += [make_row(3, batch_id="b5", scorer=UNAVAILABLE_SCORER, status="error", value=None, error="x")]
    with engine.begin() as conn:
        write_scores(conn, rows)
    with engine.connect() as conn:
        [run] = list_runs(conn)
    assert (run.rewards, run.mixed_scorers) == (("accuracy", "format"), ("format",))


def test_list_runs_of_an_empty_store(engine: Engine) -> None:
    with engine.connect() as conn:
        assert list_runs(conn) == []


def test_step_stats_match_hand_computed_numbers(scored: Engine) -> None:
    with scored.connect() as conn:
        stats = {(s.step, s.reward): s for s in step_stats(conn, "run-a")}
    assert list(stats) == [(0, "accuracy"), (0, "format"), (1, "accuracy"), (1, "format")]

    acc0 = stats[0, "accuracy"]
    # values 1, 0, 1, 0.5: mean 2.5/4 = 0.625; deviations .375 -.625 .375 -.125, squares sum to
    # .140625 + .390625 + .140625 + .015625 = .6875; population variance .6875/4 = .171875.
    assert acc0.count == 6
    assert dict(acc0.statuses) == {"ok": 4, "unscorable": 1, "error": 1, "timeout": 0}
    assert acc0.ok == 4
    assert acc0.mean == pytest.approx(0.625)
    assert acc0.std == pytest.approx(math.sqrt(0.171875))
    assert (acc0.min, acc0.max) == (0.0, 1.0)

    fmt0 = stats[0, "format"]  # all equal: std exactly 0, not a rounding residue
    assert (fmt0.count, fmt0.ok, fmt0.mean, fmt0.std) == (3, 3, 0.5, 0.0)

    acc1 = stats[1, "accuracy"]  # 2 and 4: mean 3, population std 1
    assert (acc1.count, acc1.statuses["timeout"]) == (3, 1)
    assert acc1.mean == pytest.approx(3.0)
    assert acc1.std == pytest.approx(1.0)

    fmt1 = stats[1, "format"]  # nothing ok: no statistics
    assert (fmt1.count, fmt1.ok, fmt1.statuses["error"]) == (2, 0, 2)
    assert (fmt1.mean, fmt1.std, fmt1.min, fmt1.max) == (None, None, None, None)
    assert set(fmt1.statuses) == set(STATUSES)


def test_step_stats_filters(scored: Engine) -> None:
    with scored.connect() as conn:
        only = step_stats(conn, "run-a", rewards=["format"], step_min=1)
        b = step_stats(conn, "run-b")
        none = step_stats(conn, "no-such-run")
    assert [(s.step, s.reward) for s in only] == [(1, "format")]
    assert [(s.step, s.reward, s.count, s.std) for s in b] == [(None, "accuracy", 1, 0.0)]
    assert none == []


def test_step_stats_count_only_the_rows_a_resumed_run_keeps(engine: Engine, make_row: MakeRow) -> None:
    """The first pass: sample 1 failed, sample 3 was sent twice in one chunk (both stand). The resumed
    pass (a new batch) rescored sample 1 ok; its output holds that score, not the error."""
    rows = [
        make_row(0, batch_id="c1", value=1.0),
        make_row(1, batch_id="c1", value=None, status="error", error="judge down"),
        make_row(2, batch_id="c1", value=0.0),
        make_row(3, batch_id="c1", value=1.0),
        make_row(4, batch_id="c1", value=1.0, sample_hash=make_row(3)["sample_hash"]),
    ]
    resumed = [make_row(0, batch_id="c2", sample_hash=make_row(1)["sample_hash"], value=0.5)]
    with engine.begin() as conn:
        write_scores(conn, rows)
    with engine.begin() as conn:
        write_scores(conn, resumed)
    with engine.connect() as conn:
        [stats] = step_stats(conn, "run-a")
    assert (stats.count, stats.ok, stats.statuses["error"]) == (5, 5, 0)
    assert stats.mean == pytest.approx((1.0 + 0.5 + 0.0 + 1.0 + 1.0) / 5)


def test_run_scores_order_and_filters(scored: Engine) -> None:
    with scored.connect() as conn:
        everything = run_scores(conn, "run-a")
        step1_acc = run_scores(conn, "run-a", step_min=1, step_max=1, rewards=["accuracy"])
        first_two = run_scores(conn, "run-a", limit=2)
        step0 = run_scores(conn, "run-a", step_max=0)
    keys = [(r.step, r.batch_id, r.sample_index, r.reward) for r in everything]
    assert keys == sorted(keys)
    assert len(everything) == 14
    assert [(r.sample_index, r.status, r.value) for r in step1_acc] == [
        (0, "ok", 2.0),
        (1, "ok", 4.0),
        (2, "timeout", None),
    ]
    assert [(r.sample_index, r.reward) for r in first_two] == [(0, "accuracy"), (0, "format")]
    assert {r.step for r in step0} == {0} and len(step0) == 9
    error = next(r for r in everything if r.status == "error")
    assert (error.error, error.value, error.created_at) == ("error!", None, at(4))


def test_run_scores_puts_scores_without_a_step_last(engine: Engine, make_row: MakeRow) -> None:
    with engine.begin() as conn:
        write_scores(conn, [make_row(0, step=None, batch_id="x"), make_row(0, step=5, batch_id="y")])
    with engine.connect() as conn:
        assert [r.step for r in run_scores(conn, "run-a")] == [5, None]
        assert [s.step for s in step_stats(conn, "run-a")] == [5, None]


def test_sample_history_across_batches_and_runs(scored: Engine, make_row: MakeRow) -> None:
    sample = make_row(0)
    with scored.connect() as conn:
        by_hash = sample_history(conn, sample_hash=sample["sample_hash"])
        by_id = sample_history(conn, sample_id="gsm8k-0")
        both = sample_history(conn, sample_hash=sample["sample_hash"], sample_id="gsm8k-0")
        neither = sample_history(conn, sample_id="gsm8k-0", sample_hash="f" * 64)
    # run-a batch a0 (accuracy at 0', format at 10'), run-a batch a1 (accuracy 20', format 25'),
    # run-b batch b0 (accuracy at 60'): oldest first.
    assert [(r.run_id, r.batch_id, r.reward, r.created_at) for r in by_hash] == [
        ("run-a", "a0", "accuracy", at(0)),
        ("run-a", "a0", "format", at(10)),
        ("run-a", "a1", "accuracy", at(20)),
        ("run-a", "a1", "format", at(25)),
        ("run-b", "b0", "accuracy", at(60)),
    ]
    assert by_id == by_hash == both
    assert neither == []


def test_sample_history_needs_a_hash_or_an_id(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(ValueError, match="sample_hash or a sample_id"):
        sample_history(conn)
