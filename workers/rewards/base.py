"""The batch-first reward contract every reward kind implements.

A reward *kind* (``format``, ``accuracy``, a reward model …) is a :class:`Reward` subclass with an
``Options`` model; a configured *reward* is a name bound to a kind and its options. A worker builds
each reward once per process, calls :meth:`Reward.setup` before it consumes (models load, servers are
checked), then calls :meth:`Reward.score` with whole chunks (through
:func:`~rewardq.workers.rewards.turns.score_samples`, which scores each turn of a conversation when the
options say ``per_turn``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from rewardq.wire.schema import Sample, Status

if TYPE_CHECKING:
    from rewardq.workers.process.resources import WorkerResources


@dataclass(frozen=True, slots=True)
class ScoreMeta:
    """What a scorer reports about one sample beyond its value; each field is an audit column.

    None means "does not apply" (a rule reward has no cache or HTTP attempts).
    """

    truncated: bool | None = None  # the input was cut to fit the model's max_length
    cache_hit: bool | None = None  # the value came from the result cache, not a new request
    http_attempts: int | None = None  # HTTP requests made for this sample (retries included)
    replica: str | None = None  # the server (base URL) that answered
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    template_hash: str | None = None  # hash of the prompt template the judge was asked with


@dataclass(frozen=True, slots=True)
class Score:
    """One sample's score: a value or None, a status, and why when it is not ``ok``."""

    value: float | None
    status: Status = "ok"
    error: str | None = None
    raw: str | None = None  # a judge's raw output, kept for the audit
    meta: ScoreMeta | None = None
    steps: tuple[float | None, ...] | None = None
    """Per step (a process reward model) or assistant turn (``per_turn``), its score; None for a scalar
    reward. ``value`` is their aggregate."""
    step_ends: tuple[int, ...] | None = None
    """Per step, the character offset in the completion text where it ends (None where steps are turns)."""

    @classmethod
    def ok(
        cls,
        value: float,
        raw: str | None = None,
        meta: ScoreMeta | None = None,
        *,
        steps: tuple[float | None, ...] | None = None,
        step_ends: tuple[int, ...] | None = None,
    ) -> Score:
        return cls(float(value), "ok", None, raw, meta, steps, step_ends)

    @classmethod
    def unscorable(cls, reason: str, meta: ScoreMeta | None = None) -> Score:
        return cls(None, "unscorable", reason, None, meta)

    @classmethod
    def failed(cls, error: str, raw: str | None = None, meta: ScoreMeta | None = None) -> Score:
        return cls(None, "error", error, raw, meta)

    @classmethod
    def timed_out(cls, error: str, raw: str | None = None, meta: ScoreMeta | None = None) -> Score:
        return cls(None, "timeout", error, raw, meta)


TurnAggregate = Literal["last", "min", "mean", "max", "prod"]


class RewardOptions(BaseModel):
    """Base of every kind's options: unknown keys are errors, values are checked on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Seconds one call of the reward on a chunk may take (None: the kind's ``timeout_default``); the
    samples still unscored then are ``timeout``. Not part of the fingerprint: it bounds the call, it does
    not change how a value is computed."""
    per_turn: bool = False
    """Score each assistant turn of the sample's conversation as a sample of its own
    (:mod:`rewardq.workers.rewards.turns`); the sample's value is ``turn_aggregate`` over the turns."""
    turn_aggregate: TurnAggregate = "last"
    """How the turn scores make the sample's value (``per_turn`` only): ``last``, ``min``, ``mean``, ``max``
    or ``prod``. Not ``aggregate``: kinds that combine steps or comparisons name theirs so."""

    @field_validator("turn_aggregate")
    @classmethod
    def _with_turns(cls, value: TurnAggregate, info: ValidationInfo) -> TurnAggregate:
        if not info.data.get("per_turn"):
            raise ValueError("applies only with per_turn = true")
        return value

    def fingerprint_json(self) -> str:
        """The options as the fingerprint hashes them: without ``timeout``, and without the turn options
        at their defaults, so that a configuration from before they existed keeps its fingerprint."""
        unscored = {"timeout"} | {
            name for name in TURN_OPTIONS if getattr(self, name) == RewardOptions.model_fields[name].default
        }
        return self.model_dump_json(exclude=unscored)


TURN_OPTIONS = ("per_turn", "turn_aggregate")


class Reward(ABC):
    """A configured reward. Subclasses set ``kind``, ``version`` and ``Options`` and implement ``score``.

    Kinds that load something (a model, a client) do it in :meth:`setup`, which the worker calls once
    per process before it consumes; a failure there stops the worker at start (RewardSetupError).
    """

    kind: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type[RewardOptions]] = RewardOptions
    holds_model: ClassVar[bool] = False
    """True for kinds that keep a model in process memory: served by the solo or threads pool only,
    so that a worker holds one copy per device (prefork would load one per child)."""
    runs_in: ClassVar[Literal["child", "process"]] = "child"
    """Where the worker calls ``score``: ``child``, a killable process of the reward's own (CPU kinds);
    ``process``, the worker process under a watchdog (models, judges). A kind that sets ``holds_model``
    runs in ``process`` unless it says otherwise."""
    timeout_default: ClassVar[float] = 30.0
    """The kind's ``timeout`` when the options give none."""
    sees: ClassVar[Literal["sample", "group"]] = "sample"
    """``group``: the kind scores the completions of a group together (a pairwise judge); every call of
    :meth:`score` then holds whole groups (:attr:`Sample.group_key`; the producer never splits one
    across tasks), and the kind is listed in :data:`rewardq.wire.groups.GROUP_KINDS`."""
    turns_allowed: ClassVar[bool] = True
    """Whether the rewards file may set ``per_turn = true``: False for a kind that does not score one
    completion alone (a ``group`` kind unless it says otherwise, a process reward model)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("holds_model") and "runs_in" not in cls.__dict__:
            cls.runs_in = "process"
        if cls.__dict__.get("sees") == "group" and "turns_allowed" not in cls.__dict__:
            cls.turns_allowed = False

    def __init__(self, name: str, options: RewardOptions) -> None:
        self.name = name
        self.options = options

    @property
    def time_limit(self) -> float:
        """Seconds one call of :meth:`score` may take: the ``timeout`` option, else the kind's default."""
        return self.options.timeout if self.options.timeout is not None else self.timeout_default

    def setup(self, resources: WorkerResources) -> None:  # noqa: B027 - optional hook
        """Load what scoring needs (models, clients) and check it works; raise RewardSetupError if not.

        Called once per worker process, before the worker consumes tasks.
        """

    def identity(self) -> dict[str, str]:
        """What identifies this scorer beyond its options (a model's resolved path, revision, weights
        hash), folded into :attr:`fingerprint`. Computed from the options and local files only (no model
        load, no network), so that offline rescoring can tell what is already scored. No secrets."""
        return {}

    @cached_property
    def fingerprint(self) -> str:
        """Kind, version and a hash of the options and identity: the scorer's identity in the audit."""
        identity = self.identity()
        text = self.options.fingerprint_json()
        if identity:
            text += orjson.dumps(identity, option=orjson.OPT_SORT_KEYS).decode()
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return f"{self.kind}@{self.version}:{digest}"

    @abstractmethod
    def score(self, samples: Sequence[Sample]) -> list[Score]:
        """Score a chunk; return one :class:`Score` per sample, in order. Never raise for one bad sample."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the reward holds (models, clients, helper processes)."""
