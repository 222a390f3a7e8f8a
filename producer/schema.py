"""The wire schema: what travels between a trainer and the workers, as JSON.

A trainer's rows (TRL's ``prompt``/``completion``, ms-swift's ``messages``) are normalized into
:class:`Sample`; a batch becomes one :class:`ScoreTask` per (chunk, reward); a worker answers each
with a :class:`ChunkResult`. The same models validate at both ends.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from typing_extensions import TypedDict

SCHEMA_VERSION: Literal[1] = 1
TASK_NAME = "rewardq.score"
QUEUE_PREFIX = "rewards."

Status = Literal["ok", "unscorable", "error", "timeout"]
STATUSES: tuple[Status, ...] = ("ok", "unscorable", "error", "timeout")

RewardName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
RunId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


def queue_for(reward: str) -> str:
    """The queue a reward's tasks travel on."""
    return QUEUE_PREFIX + reward


class ChatMessage(TypedDict, total=False):
    """One chat message; keys beyond role and content (tool calls, names) travel untouched."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    role: str
    content: str | list[Any] | None


def message_text(message: ChatMessage) -> str:
    """The text of a message: its content, or the text parts of a multimodal content list."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


class Sample(BaseModel):
    """One completion to score, with its prompt and the dataset columns scorers may read."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | list[ChatMessage] | None = None
    completion: str | list[ChatMessage]
    columns: dict[str, Any] = Field(default_factory=dict)

    @property
    def completion_text(self) -> str:
        """The completion as text: a string as is, or the assistant messages' text joined."""
        if isinstance(self.completion, str):
            return self.completion
        return "".join(message_text(m) for m in self.completion if m.get("role", "assistant") == "assistant")


class TaskEnvelope(BaseModel):
    """A task's payload with its samples not yet validated: what a worker checks first."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    batch_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    run_id: RunId
    step: Annotated[int, Field(ge=0)] | None = None
    reward: RewardName
    offset: Annotated[int, Field(ge=0)] = 0
    samples: Annotated[list[Any], Field(min_length=1)]


class ScoreTask(TaskEnvelope):
    """One chunk of a batch for one reward: the payload of a ``rewardq.score`` task."""

    samples: Annotated[list[Sample], Field(min_length=1)]


class ChunkResult(BaseModel):
    """A worker's answer to one :class:`ScoreTask`, aligned with its samples."""

    model_config = ConfigDict(extra="forbid")

    reward: str
    offset: int
    values: list[float | None]
    statuses: list[Status]
    errors: dict[int, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _aligned(self) -> ChunkResult:
        if len(self.values) != len(self.statuses):
            raise ValueError(f"{len(self.values)} values but {len(self.statuses)} statuses")
        return self
