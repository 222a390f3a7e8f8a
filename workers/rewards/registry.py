"""The registry of reward kinds: built-in kinds as lazy ``"module:Class"`` entries, plus plugins.

Listing kinds imports nothing; a kind's module is imported when it is first resolved. The rule kinds
are the producer's catalog of built-in rewards (rewardq.catalog.BUILTIN_REWARDS), each found by its
name: the module ``rules/<name>.py``, the class ``<Name>Reward``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from rewardq.catalog import BUILTIN_REWARDS
from rewardq.wire.errors import ConfigError
from rewardq.workers.rewards.base import Reward

# Rule kinds that need no options, served under their own name with default options and no rewards
# file. Kinds that need options (a model path, a server URL) are served only as configured rewards.
RULE_KINDS: tuple[str, ...] = BUILTIN_REWARDS


def rule_entry(name: str) -> str:
    """The lazy entry of a rule kind: ``soft_overlong`` -> ``rules.soft_overlong:SoftOverlongReward``."""
    return f"rewardq.workers.rewards.rules.{name}:{name.title().replace('_', '')}Reward"


BUILTIN_KINDS: Mapping[str, str] = {name: rule_entry(name) for name in RULE_KINDS} | {
    "embedding_similarity": "rewardq.workers.rewards.models.embedding_similarity:EmbeddingSimilarityReward",
    "code": "rewardq.workers.rewards.code.reward:CodeReward",
    "function": "rewardq.workers.rewards.functions.function:FunctionReward",
    "judge": "rewardq.workers.rewards.judges.judge:JudgeReward",
    "pairwise_judge": "rewardq.workers.rewards.judges.pairwise:PairwiseJudgeReward",
    "group_judge": "rewardq.workers.rewards.judges.group_judge:GroupJudgeReward",
    "local_judge": "rewardq.workers.rewards.judges.local_judge:LocalJudgeReward",
    "process_reward_model": "rewardq.workers.rewards.models.process_reward_model:ProcessRewardModel",
    "remote_reward_model": "rewardq.workers.rewards.models.remote_reward_model:RemoteRewardModel",
    "reward_model": "rewardq.workers.rewards.models.reward_model:RewardModelReward",
}


class KindRegistry:
    """Reward kinds by name. ``add`` is what a plugin's ``register(kinds)`` calls."""

    def __init__(self, entries: Mapping[str, str | type[Reward]] | None = None) -> None:
        self._entries: dict[str, str | type[Reward]] = dict(BUILTIN_KINDS if entries is None else entries)

    def add(self, kind: str, target: str | type[Reward]) -> None:
        """Register a kind as a Reward subclass or a lazy ``"module:Class"`` string."""
        if kind in self._entries:
            raise ConfigError(f"reward kind {kind!r} is already registered ({self._describe(kind)})")
        if not isinstance(target, str) and not (isinstance(target, type) and issubclass(target, Reward)):
            raise ConfigError(
                f"reward kind {kind!r} must be a Reward subclass or 'module:Class', got {target!r}"
            )
        self._entries[kind] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, kind: object) -> bool:
        return kind in self._entries

    def resolve(self, kind: str) -> type[Reward]:
        """The Reward class of a kind; an unknown kind's error lists the known ones."""
        try:
            target = self._entries[kind]
        except KeyError:
            raise ConfigError(
                f"unknown reward kind {kind!r}; known kinds: {', '.join(self.names())}"
            ) from None
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(module_name), attr)
            if not (isinstance(cls, type) and issubclass(cls, Reward)):
                raise ConfigError(f"{target} is not a Reward subclass")
            self._entries[kind] = target = cls
        return target

    def _describe(self, kind: str) -> str:
        target = self._entries[kind]
        return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
