"""The ``timeout`` option every reward kind takes: checked on load, a default per kind, not in the
scorer's fingerprint (runs are pinned to fingerprints)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardq.wire.errors import ConfigError
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.registry import KindRegistry

# The fingerprints of these defaults before rewards took ``timeout`` (main at 2dabe10).
PINNED = {
    "format": "format@1:17457333e65f",
    "accuracy": "accuracy@1:0601da74fe2a",
    "cosine": "cosine@1:2b6bd0b565b1",
}
JUDGE_PINNED = "judge@1:647a4a4f33f0"
JUDGE = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "structured": {"choice": ["a", "b"]}}


def load(tmp_path: Path, table: str) -> RewardsConfig:
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(table)
    return RewardsConfig.load(rewards)


def test_default_fingerprints_are_unchanged_and_timeout_is_not_in_them(tmp_path: Path) -> None:
    config = RewardsConfig.load(None)
    assert {name: config.build(name).fingerprint for name in PINNED} == PINNED
    timed = load(tmp_path, '[rewards.format]\nkind = "format"\ntimeout = 3\n').build("format")
    assert timed.time_limit == 3 and timed.fingerprint == PINNED["format"]
    judge = KindRegistry().resolve("judge")
    assert judge("j", judge.Options(**JUDGE)).fingerprint == JUDGE_PINNED
    assert judge("j", judge.Options(**JUDGE, timeout=5)).fingerprint == JUDGE_PINNED


def test_each_kind_has_its_default() -> None:
    kinds = KindRegistry()
    config = RewardsConfig.load(None)
    assert config.build("format").time_limit == 30
    assert config.build("accuracy").time_limit == 120
    assert kinds.resolve("function").timeout_default == 120
    assert kinds.resolve("reward_model").timeout_default == 300
    judge = kinds.resolve("judge")
    assert judge("j", judge.Options(**JUDGE)).time_limit == 660  # task_timeout (600) + 60
    assert judge("j", judge.Options(**JUDGE, task_timeout=30)).time_limit == 90
    for name in ("pairwise_judge", "group_judge"):
        group = kinds.resolve(name)
        assert group(name, group.Options(**JUDGE)).time_limit == 660, name


def test_where_each_kind_runs() -> None:
    kinds = KindRegistry()
    assert {name: kinds.resolve(name).runs_in for name in ("format", "accuracy", "function")} == {
        "format": "child",
        "accuracy": "child",
        "function": "child",
    }
    for name in (
        *("judge", "pairwise_judge", "group_judge", "remote_reward_model"),
        *("reward_model", "embedding_similarity", "local_judge"),
    ):
        assert kinds.resolve(name).runs_in == "process", name


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", "greater than 0"), ("-1", "greater than 0"), ('"soon"', "valid number"), ("inf", "finite")],
)
def test_an_invalid_timeout_is_one_line_naming_the_field(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, f'[rewards.format]\nkind = "format"\ntimeout = {value}\n')
    (line,) = str(raised.value).splitlines()
    assert "[rewards.format]" in line and "'timeout'" in line and problem in line
