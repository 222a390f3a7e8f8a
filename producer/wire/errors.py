"""The rewardq error tree.

RewardqError
├── SettingsError        a REWARDQ_* setting is malformed
│   └── UnsupportedDatabase  the audit database URL names a backend other than SQLite or PostgreSQL
├── InvalidInputError    samples, records or a request fail validation (before anything is enqueued)
├── UnknownRewardError   a reward name is neither built in nor configured
├── ConfigError          a rewards config file or plugin is invalid
├── BrokerError          the broker or result backend failed mid-run (a rescoring run can be resumed)
├── RewardSetupError     a reward cannot be built at worker start (missing model, unreachable server)
├── EmbeddedUnavailable  embedded mode was asked for but the worker extras are not installed
├── UnknownBatchError    a batch id has no record in the result backend
├── DeadlineExceeded     a batch with the ``fail`` deadline policy is not scored in time
├── BrokerUnavailable    the broker or result backend is unreachable or refuses the credentials
│   └── BrokerLost       it went away after the first connection (sends or waits outlasted retries)
├── UnservedRewardError  no live worker serves a requested reward (before anything is enqueued)
└── ScorerMismatchError  a reward would be scored by more than one scorer (fingerprint)
    └── ScorerChangedError   a run's reward is now served by another scorer than the run began with
"""

from __future__ import annotations

from dataclasses import dataclass


class RewardqError(Exception):
    """Raised for every rewardq failure; the root of the tree above."""


class SettingsError(RewardqError):
    """Raised when a REWARDQ_* setting is malformed or contradicts another."""


class UnsupportedDatabase(SettingsError, ValueError):
    """Raised when the audit database URL names a backend other than SQLite or PostgreSQL."""


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (file of a directory, line or sample index), which field, what is
    wrong."""

    field: str
    message: str
    line: int | None = None
    index: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
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


class BrokerError(RewardqError):
    """Raised when the broker or result backend refuses or loses a request in the middle of a run."""


class RewardSetupError(RewardqError):
    """Raised when a reward cannot be built at worker start: a missing model, a model without the
    expected head, out of memory, an unreachable server. The message names the reward and the cause."""


class EmbeddedUnavailable(RewardqError, ImportError):
    """Raised when no broker is configured and the embedded worker's extras are not installed."""


class UnknownBatchError(RewardqError, KeyError):
    """Raised when a batch id has no record in the result backend (never submitted, collected, or expired)."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(
            f"batch {batch_id!r} is not in the result backend: never submitted there, already collected "
            "by get(), or past REWARDQ_RESULT_EXPIRES"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class DeadlineExceeded(RewardqError, TimeoutError):
    """Raised when a batch whose deadline policy is ``fail`` still misses scores when the wait ends."""

    def __init__(self, batch_id: str, pending: int, total: int) -> None:
        self.batch_id = batch_id
        self.pending = pending
        self.total = total
        super().__init__(
            f"batch {batch_id}: {pending} of {total} tasks not back by the deadline; "
            "the batch is kept, get() can still collect it"
        )


class BrokerUnavailable(RewardqError):
    """Raised when the broker or the result backend cannot be reached or refuses the credentials; the
    message names the URL with its password masked."""


class BrokerLost(BrokerUnavailable):
    """Raised when the broker or result backend went away after the first connection (a send or a wait
    outlasted the retries): work may already be queued, unlike a first connection that is refused."""


class UnservedRewardError(RewardqError):
    """Raised when no live worker serves a requested reward within REWARDQ_SERVE_WAIT seconds; nothing
    was enqueued. The message names the rewards and the command that starts a worker for them."""

    def __init__(self, rewards: list[str], waited: float) -> None:
        self.rewards = rewards
        names = ", ".join(repr(r) for r in rewards)
        noun = "reward" if len(rewards) == 1 else "rewards"
        super().__init__(
            f"no live worker serves {noun} {names} (waited {waited:g}s, REWARDQ_SERVE_WAIT); nothing was "
            f"enqueued: start one with `rewardq worker --rewards {','.join(rewards)}`"
        )


class ScorerMismatchError(RewardqError):
    """Raised when a reward would be scored by more than one scorer (fingerprint): live workers announce
    different ones for it, a worker starts with another one than the live workers serving it, or a
    client's rewards config differs from what the workers serve. Nothing was enqueued or consumed."""


class ScorerChangedError(ScorerMismatchError):
    """Raised when a later batch of a run asks for a reward that live workers now serve with another
    fingerprint than the one the run was pinned to on its first batch; nothing was enqueued."""

    def __init__(self, run_id: str, reward: str, pinned: str, served: str) -> None:
        self.run_id = run_id
        self.reward = reward
        self.pinned = pinned
        self.served = served
        super().__init__(
            f"run {run_id!r} is scored for reward {reward!r} by scorer {pinned} but live workers now "
            f"serve it with {served}; nothing was enqueued: bring back workers with the run's scorer, give "
            "the changed reward a new name, or pass allow_scorer_change=True (rewardq score "
            "--allow-scorer-change) to change scorer mid-run on purpose"
        )
