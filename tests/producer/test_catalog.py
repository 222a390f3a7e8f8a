"""Reward names and weights a producer accepts."""

from pathlib import Path

import pytest

from rewardq import ConfigError, InvalidInputError, UnknownRewardError
from rewardq.catalog import BUILTIN_REWARDS, check_weights, known_rewards, parse_reward_specs


def test_parse_reward_specs() -> None:
    assert parse_reward_specs(["accuracy", "format=0.5", " cosine = -1 "]) == {
        "accuracy": 1.0,
        "format": 0.5,
        "cosine": -1.0,
    }


def test_parse_reward_specs_rejects_a_weight_that_is_not_a_number() -> None:
    with pytest.raises(InvalidInputError, match=r"field 'reward.format': weight 'half' is not a number"):
        parse_reward_specs(["format=half"])


def test_known_rewards_adds_configured_names(tmp_path: Path) -> None:
    config = tmp_path / "r.toml"
    config.write_text('[rewards.strict_fmt]\nkind = "format"\n')
    assert known_rewards(config) == set(BUILTIN_REWARDS) | {"strict_fmt"}
    with pytest.raises(ConfigError, match="does not exist"):
        known_rewards(tmp_path / "missing.toml")


def test_check_weights() -> None:
    known = {"accuracy", "format"}
    assert check_weights("format", known) == {"format": 1.0}
    assert check_weights(["accuracy", "format"], known) == {"accuracy": 1.0, "format": 1.0}
    assert check_weights({"format": 0}, known) == {"format": 0.0}
    with pytest.raises(UnknownRewardError, match="unknown reward 'nope'; known rewards: accuracy, format"):
        check_weights({"nope": 1.0}, known)
    with pytest.raises(InvalidInputError, match=r"field 'rewards\.format': weight must be a number, got str"):
        check_weights({"format": "1"}, known)
    with pytest.raises(InvalidInputError, match="weight must be a number, got bool"):
        check_weights({"format": True}, known)
    with pytest.raises(InvalidInputError, match="must be finite"):
        check_weights({"format": float("nan")}, known)
    with pytest.raises(InvalidInputError, match="at least one reward"):
        check_weights({}, known)
