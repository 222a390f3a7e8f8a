"""The rewardq error tree.

RewardqError
├── SettingsError        a REWARDQ_* setting is malformed
├── InvalidInputError    samples, records or a request fail validation (before anything is enqueued)
├── UnknownRewardError   a reward name is neither built in nor configured
├── ConfigError          a rewards config file or plugin is invalid
├── RewardSetupError     a reward cannot be built at worker start (missing model, unreachable server)
└── EmbeddedUnavailable  embedded mode was asked for but the worker extras are not installed
"""

from __future__ import annotations

from dataclasses import dataclass


class RewardqError(Exception):
    """Raised for every rewardq failure; the root of the tree above."""


class SettingsError(RewardqError):
    """Raised when a REWARDQ_* setting is malformed or contradicts another."""


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (line or sample index), which field, what is wrong."""

    field: str
    message: str
    line: int | None = None
    index: int | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        elif self.index is not None:
            where.append(f"sample {self.index}")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class InvalidInputError(RewardqError, ValueError):
    """Raised when samples, records or a request fail validation; lists every problem found."""

    def __init__(self, problems: list[Problem], *, source: str | None = None, limit: int = 20) -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        shown = "\n  ".join(str(p) for p in problems[:limit])
        more = f"\n  … and {len(problems) - limit} more" if len(problems) > limit else ""
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"{head}{len(problems)} invalid input {noun}; nothing was enqueued:\n  {shown}{more}"
        )


class UnknownRewardError(RewardqError, KeyError):
    """Raised when a reward name is neither a built-in reward nor configured in the rewards file."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown reward {name!r}; known rewards: {', '.join(self.known)}")

    def __str__(self) -> str:
        return str(self.args[0])


class ConfigError(RewardqError, ValueError):
    """Raised when a rewards config file or a plugin it names is invalid."""


class RewardSetupError(RewardqError):
    """Raised when a reward cannot be built at worker start: a missing model, a model without the
    expected head, out of memory, an unreachable server. The message names the reward and the cause."""


class EmbeddedUnavailable(RewardqError, ImportError):
    """Raised when no broker is configured and the embedded worker's extras are not installed."""
