"""Which reward names a producer may ask for: the built-in rule rewards and those the rewards file names.

The producer never imports the workers' code; it reads only the names of ``[rewards.<name>]`` tables and
their ``kind`` (which of them score whole groups: :func:`group_rewards`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rewardq.wire.errors import ConfigError, InvalidInputError, Problem, UnknownRewardError
from rewardq.wire.groups import GROUP_KINDS

# Rule rewards every worker serves under their kind's name with no rewards file; the workers' registry
# finds each one's class by its name (rewardq.workers.rewards.registry.rule_entry).
BUILTIN_REWARDS: tuple[str, ...] = (
    "accuracy",
    "cosine",
    "format",
    "repetition",
    "soft_overlong",
    "string_check",
    "text_similarity",
)


def read_rewards_file(path: Path) -> dict[str, Any]:
    """The parsed TOML of a rewards file, or a ConfigError saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"rewards config {path} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"rewards config {path} is not valid TOML: {e}") from e


def _tables(path: Path, doc: Mapping[str, Any] | None = None) -> dict[str, Any]:
    rewards = (read_rewards_file(path) if doc is None else doc).get("rewards", {})
    if not isinstance(rewards, dict) or not all(isinstance(table, dict) for table in rewards.values()):
        raise ConfigError(f"rewards config {path}: 'rewards' must be a table of [rewards.<name>] tables")
    return rewards


def configured_rewards(path: Path | None) -> list[str]:
    """Names of the rewards a rewards file configures (``[rewards.<name>]`` tables)."""
    return [] if path is None else list(_tables(path))


def group_kinds(doc: Mapping[str, Any]) -> frozenset[str]:
    """The kinds whose rewards score whole groups: :data:`GROUP_KINDS` and, for a plugin's kinds, the
    rewards file's top-level ``group_kinds`` list (a worker checks both against the kinds' classes)."""
    return GROUP_KINDS | frozenset(_names(doc, "group_kinds"))


def _names(doc: Mapping[str, Any], key: str) -> list[str]:
    names = doc.get(key, [])
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"rewards config: {key!r} must be a list of kind names, got {names!r}")
    return names


def group_rewards(path: Path | None) -> frozenset[str]:
    """Names of the configured rewards that score whole groups (their kind is a group kind), whose tasks
    must hold whole groups (:mod:`rewardq.chunking`)."""
    if path is None:
        return frozenset()
    doc = read_rewards_file(path)
    kinds = group_kinds(doc)
    return frozenset(name for name, table in _tables(path, doc).items() if table.get("kind") in kinds)


STEP_KINDS: frozenset[str] = frozenset({"process_reward_model"})
"""Reward kinds whose scores have steps, as a trainer adapter that must give every sample the same keys
(verl's ``reward_extra_info``) needs to know beforehand; a plugin's are in the rewards file's top-level
``step_kinds``, and a reward of any kind with ``per_turn = true`` has turns."""


def step_rewards(path: Path | None) -> frozenset[str]:
    """Names of the configured rewards whose scores have steps (or turns)."""
    if path is None:
        return frozenset()
    doc = read_rewards_file(path)
    kinds = STEP_KINDS | frozenset(_names(doc, "step_kinds"))
    return frozenset(
        name
        for name, table in _tables(path, doc).items()
        if table.get("kind") in kinds or table.get("per_turn") is True
    )


def known_rewards(config: Path | None) -> set[str]:
    return set(BUILTIN_REWARDS) | set(configured_rewards(config))


def parse_reward_specs(specs: Iterable[str]) -> dict[str, float]:
    """``["accuracy", "format=0.5"]`` → ``{"accuracy": 1.0, "format": 0.5}`` (the CLI's --reward)."""
    weights: dict[str, float] = {}
    problems: list[Problem] = []
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name = name.strip()
        if not name:
            problems.append(Problem("reward", f"{spec!r} has no reward name"))
            continue
        try:
            weights[name] = float(raw) if sep else 1.0
        except ValueError:
            problems.append(Problem(f"reward.{name}", f"weight {raw!r} is not a number"))
    if problems:
        raise InvalidInputError(problems)
    return weights


# A bound on weights, so that a weighted total of ordinary reward values cannot overflow to inf
# (it would be written as null next to rewards that are all ok).
MAX_WEIGHT = 1e6


def check_weights(rewards: Mapping[str, object] | Iterable[str] | str, known: set[str]) -> dict[str, float]:
    """Validate reward names and weights (weight 0 means: score and log it, don't count it)."""
    if isinstance(rewards, str):
        rewards = {rewards: 1.0}
    elif not isinstance(rewards, Mapping):
        rewards = dict.fromkeys(rewards, 1.0)
    if not rewards:
        raise InvalidInputError([Problem("rewards", "at least one reward is needed")])
    problems: list[Problem] = []
    weights: dict[str, float] = {}
    for name, weight in rewards.items():
        if name not in known:
            raise UnknownRewardError(str(name), sorted(known))
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            problems.append(
                Problem(f"rewards.{name}", f"weight must be a number, got {type(weight).__name__}")
            )
        elif not math.isfinite(weight):
            problems.append(Problem(f"rewards.{name}", f"weight must be finite, got {weight}"))
        elif abs(weight) > MAX_WEIGHT:
            problems.append(
                Problem(f"rewards.{name}", f"weight must be within ±{MAX_WEIGHT:g} (got {weight:g})")
            )
        else:
            weights[str(name)] = float(weight)
    if problems:
        raise InvalidInputError(problems)
    return weights
