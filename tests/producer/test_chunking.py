"""Chunking at the producer: pointwise batches every chunk_size samples, group-level ones never splitting
a group, and the groups a producer refuses before anything is enqueued."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardq import RewardClient, Settings
from rewardq.catalog import group_rewards, step_rewards
from rewardq.chunking import MAX_OVERRUN, chunk_spans, group_spans
from rewardq.samples import to_samples
from rewardq.wire.errors import InvalidInputError
from rewardq.wire.groups import MAX_GROUP_SIZE
from tests.group_kinds import rewards_file


def test_pointwise_chunks_are_every_chunk_size_samples() -> None:
    assert chunk_spans(7, 3) == [(0, 3), (3, 6), (6, 7)]


def test_a_chunk_runs_past_chunk_size_to_keep_its_groups_whole() -> None:
    keys = list("aaaaabbbbccc")
    assert group_spans(keys, 2) == [(0, 5), (5, 9), (9, 12)]
    assert group_spans(keys, 6) == [(0, 9), (9, 12)]
    assert group_spans(list("abab" + "cc"), 1) == [(0, 4), (4, 6)]  # interleaved groups share a chunk


def test_groups_interleaved_beyond_the_bound_are_refused() -> None:
    keys = [f"k{i % 400}" for i in range(800)]  # two rounds of 400 prompts
    assert group_spans(keys, 800) == [(0, 800)]
    with pytest.raises(InvalidInputError, match=f"no chunk boundary within {8 + MAX_OVERRUN} samples"):
        group_spans([f"k{i % 700}" for i in range(1400)], 8)


def test_a_row_names_its_group_and_a_bad_one_is_one_clear_problem() -> None:
    [wire] = to_samples([{"prompt": "p", "completion": "c", "group": "uid-1"}], max_record_bytes=None)
    assert wire["group"] == "uid-1" and "group" not in wire["columns"]
    for bad, got in [
        (7, "int"),
        ("", "0 characters"),
        ("x" * 201, "201 characters"),
        ("a\x00", "a NUL character"),
    ]:
        with pytest.raises(InvalidInputError) as e:
            to_samples([{"completion": "c", "group": bad}], max_record_bytes=None)
        assert str(e.value).splitlines()[1].strip() == (
            f"sample 0, field 'group': must be a string of 1 to 200 characters without NUL, got {got}"
        )


def test_the_rewards_file_says_which_rewards_see_groups_and_have_steps(tmp_path: Path) -> None:
    config = rewards_file(tmp_path)
    assert group_rewards(config) == {"groups", "slow"}
    assert step_rewards(config) == {"steps"}


def test_an_oversize_group_is_refused_before_anything_is_enqueued(tmp_path: Path) -> None:
    # No broker listens there: the refusal comes before any connection.
    settings = Settings.from_env({}, broker_url="redis://127.0.0.1:9/0", rewards=rewards_file(tmp_path))
    rows = [{"prompt": "same", "completion": f"c{i}"} for i in range(MAX_GROUP_SIZE + 1)]
    rows += [{"prompt": "q", "completion": "c", "group": "big"}] * (MAX_GROUP_SIZE + 2)
    with RewardClient(settings) as client, pytest.raises(InvalidInputError) as e:
        client.submit(rows, {"groups": 1.0, "steps": 1.0}, run_id="r")
    limit = f"over the limit of {MAX_GROUP_SIZE} for a group-level reward"
    assert [str(p) for p in e.value.problems] == [
        f"sample 0, field 'group': the group of the samples with this prompt holds {MAX_GROUP_SIZE + 1} "
        f"samples, {limit}",
        f"sample {MAX_GROUP_SIZE + 1}, field 'group': group 'big' holds {MAX_GROUP_SIZE + 2} samples, "
        f"{limit}",
    ]
