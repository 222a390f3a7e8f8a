"""The coalescer on its own: concurrent calls share batches, each call gets its own rows back, a failed
batch fails its calls alone, and close() lets queued calls finish."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from rewardq.integrations.coalesce import Coalescer
from rewardq.results import ScoreResult


class Recorder:
    """A scorer that records each batch it is given and scores a row by its ``n`` (after a gate)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, rows: list[Mapping[str, Any]]) -> ScoreResult:
        self.gate.wait()
        numbers = [int(r["n"]) for r in rows]
        self.batches.append(numbers)
        if any(n < 0 for n in numbers):
            raise ValueError("a negative n")
        return ScoreResult(
            "b",
            {"n": 1.0},
            {"n": [float(n) for n in numbers]},
            {"n": ["ok"] * len(numbers)},
            {"n": {}},
        )


def test_concurrent_calls_share_batches_and_each_gets_its_own_rows() -> None:
    scorer = Recorder()
    coalescer = Coalescer(scorer, window=0.05)
    scorer.gate.clear()  # the first batch waits, so the calls behind it queue up
    first = coalescer.submit([{"n": 0}])

    def call(i: int) -> list[float | None]:
        return coalescer.submit([{"n": i}, {"n": 1000 + i}]).result().totals

    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(call, i) for i in range(1, 33)]
        scorer.gate.set()
        answers = [f.result() for f in futures]
    assert first.result().totals == [0.0]
    assert answers == [[float(i), float(1000 + i)] for i in range(1, 33)]
    assert len(scorer.batches) < 33, scorer.batches
    for batch in scorer.batches:  # a call's rows stay together
        for i in range(1, 33):
            assert (i in batch) == (1000 + i in batch)
    coalescer.close()


def test_a_batch_that_fails_fails_its_calls_and_the_next_batch_is_scored() -> None:
    scorer = Recorder()
    coalescer = Coalescer(scorer, window=0.0)
    with pytest.raises(ValueError, match="a negative n"):
        coalescer.submit([{"n": -1}]).result()
    slot = coalescer.submit([{"n": 7}]).result()
    assert slot.totals == [7.0]
    assert slot.values(0) == {"n": 7.0}
    coalescer.close()


def test_close_scores_what_was_queued_then_stops_the_thread() -> None:
    scorer = Recorder()
    coalescer = Coalescer(scorer, window=0.01, name="rq-test-coalescer")
    futures = [coalescer.submit([{"n": i}]) for i in range(5)]
    coalescer.close()
    assert [f.result().totals for f in futures] == [[float(i)] for i in range(5)]
    assert not any(t.name == "rq-test-coalescer" for t in threading.enumerate())
