"""Tests for token-budget packing: every index once, within the budget, results back in input order."""

from __future__ import annotations

import random

import pytest

from rewardq.workers.rewards.models.batching import pack, run_packed


def test_every_index_lands_in_exactly_one_pass() -> None:
    lengths = [random.Random(7).randint(1, 300) for _ in range(500)]
    packing = pack(lengths, 1024)
    seen = sorted(i for p in packing.passes for i in p)
    assert seen == list(range(len(lengths)))


def test_each_pass_fits_the_budget_rows_times_longest() -> None:
    rng = random.Random(3)
    lengths = [rng.choice([8, 16, 40, 700]) for _ in range(300)]
    packing = pack(lengths, 2048)
    for p in packing.passes:
        assert len(p) * max(lengths[i] for i in p) <= 2048
    assert packing.padded_tokens == sum(len(p) * max(lengths[i] for i in p) for p in packing.passes)
    assert packing.real_tokens == sum(lengths)


def test_passes_go_longest_first_each_as_full_as_the_budget_allows() -> None:
    lengths = [5, 100, 6, 99, 5, 101]
    assert pack(lengths, 202).passes == [[5, 1], [3, 2], [0, 4]]


def test_a_sample_over_the_budget_gets_a_pass_of_its_own() -> None:
    packing = pack([10, 5000, 10], 100)
    assert [1] in packing.passes
    assert sorted(i for p in packing.passes for i in p) == [0, 1, 2]


def test_sorted_packing_of_a_long_tailed_mix_pads_little() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(20, 80) if rng.random() < 0.9 else rng.randint(500, 1500) for _ in range(512)]
    assert pack(lengths, 4096).efficiency >= 0.85


def test_empty_input_packs_to_nothing() -> None:
    packing = pack([], 10)
    assert packing.passes == []
    assert packing.efficiency == 1.0


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="token_budget"):
        pack([1], 0)


def test_run_packed_restores_input_order() -> None:
    items = ["ccc", "a", "bbbb", "dd", "e"]
    packing = pack([len(s) for s in items], 6)
    calls: list[list[str]] = []

    def forward(batch: list[str]) -> list[str]:
        calls.append(batch)
        return [s.upper() for s in batch]

    assert run_packed(items, packing, forward) == ["CCC", "A", "BBBB", "DD", "E"]
    assert len(calls) == len(packing.passes) > 1


def test_run_packed_rejects_a_forward_that_drops_results() -> None:
    packing = pack([1, 1], 10)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 inputs"):
        run_packed(["a", "b"], packing, lambda batch: batch[:1])


def test_max_rows_and_extra_tokens_bound_each_pass() -> None:
    rng = random.Random(5)
    lengths = [rng.randint(1, 50) for _ in range(200)]
    packing = pack(lengths, 1000, max_rows=7, extra=20)
    for p in packing.passes:
        assert len(p) <= 7
        assert len(p) * (max(lengths[i] for i in p) + 20) <= 1000
    assert sorted(i for p in packing.passes for i in p) == list(range(len(lengths)))
    assert pack([3, 3, 3], None, max_rows=2).passes == [[0, 1], [2]]
    with pytest.raises(ValueError, match="max_rows"):
        pack([1], None, max_rows=0)
