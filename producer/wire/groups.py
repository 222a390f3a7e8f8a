"""Groups: the completions of one prompt that a group-level reward (a pairwise judge) scores together.

A sample's group is its ``group`` field where the trainer set one (verl's ``uid``), else its prompt:
TRL and ms-swift repeat the prompt once per generation. Group-level kinds are named here, so that a
producer, which never imports the workers, knows to keep their groups whole in one task; the workers'
registry checks that these kinds and the classes that see groups agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

GROUP_KINDS: frozenset[str] = frozenset({"pairwise_judge", "group_judge"})
"""Reward kinds whose every task must hold whole groups."""

MAX_GROUP_SIZE = 256
"""The most samples one group may hold: a pairwise judge asks about n·(n-1) pairs of it."""

MAX_GROUP_NAME = 200


def group_key(group: str | None, prompt: Any) -> str:
    """The key that samples of one group share: ``group`` as given, else a digest of the prompt."""
    if group is not None:
        return "g:" + group
    digest = hashlib.blake2b(orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()
    return "p:" + digest


def describe_group(key: str) -> str:
    """A group, by its key, as a problem names it."""
    return f"group {key[2:]!r}" if key.startswith("g:") else "the group of the samples with this prompt"


def oversize_problem(key: str, size: int) -> str:
    """Why a group of ``size`` samples is refused (a producer's problem, a worker's error)."""
    limit = f"over the limit of {MAX_GROUP_SIZE} for a group-level reward"
    return f"{describe_group(key)} holds {size} samples, {limit}"


def group_indices(keys: Sequence[str]) -> list[list[int]]:
    """Indices of each group's members, groups in order of their first member."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())
