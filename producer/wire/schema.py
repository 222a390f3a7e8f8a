"""The wire schema: what travels between a trainer and the workers, as JSON.

A trainer's rows (TRL's ``prompt``/``completion``, ms-swift's ``messages``) are normalized into
:class:`Sample`; a batch becomes one :class:`ScoreTask` per (chunk, reward); a worker answers each
with a :class:`ChunkResult`. The same models validate at both ends.

On a Redis broker a chunk's samples travel once, whatever the number of rewards: the producer stores
them as one JSON value under :func:`rewardq.wire.keys.samples_key` and each reward's task carries
``stored`` (their count) in place of ``samples``; a worker reads them back into the payload before it
validates it (:func:`stored_reference`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Required

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema
from typing_extensions import TypedDict

from rewardq.wire.groups import MAX_GROUP_NAME, group_key
from rewardq.wire.keys import samples_key
from rewardq.wire.settings import MAX_CHUNK_SIZE

SCHEMA_VERSION: Literal[1] = 1
TASK_NAME = "rewardq.score"
QUEUE_PREFIX = "rewards."
# The audit's scorer of rows that no scorer wrote: a task parked in the dead-letter queue, and a task whose
# reward could not be built. They are no fingerprint: a run holding them is not scored by two scorers.
PARKED_SCORER = "parked"
UNAVAILABLE_SCORER = "unavailable"
NOT_SCORERS = (PARKED_SCORER, UNAVAILABLE_SCORER)

Status = Literal["ok", "unscorable", "error", "timeout"]
STATUSES: tuple[Status, ...] = ("ok", "unscorable", "error", "timeout")

# What the audit store can hold (its column lengths in storage.models come from here): text without
# NUL characters (PostgreSQL refuses them), a 32-bit ``step``, and at most this many characters of a
# reward name, run id, batch id and sample id (the ``id`` or ``sample_id`` column).
NO_NUL = r"^[^\x00]*$"
NUL_PROBLEM = "must not contain NUL characters (the audit store cannot hold them)"
SURROGATE_PROBLEM = "must be valid Unicode: it holds a lone surrogate, which UTF-8 cannot encode"
MAX_REWARD_NAME = 64
MAX_RUN_ID = 200
MAX_BATCH_ID = 64
MAX_STEP = 2**31 - 1
MAX_SAMPLE_ID = 512

RewardName = Annotated[
    str, StringConstraints(pattern=rf"^[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_REWARD_NAME - 1}}}$")
]
AUDIT_LIMIT_ERROR = "audit_limit"

RunId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_RUN_ID, pattern=NO_NUL)]
BatchId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_BATCH_ID, pattern=NO_NUL)]
Step = Annotated[int, Field(ge=0, le=MAX_STEP)]


def id_problem(value: Any, limit: int) -> str | None:
    """Why a run id or batch id (``limit``: MAX_RUN_ID, MAX_BATCH_ID) cannot be stored, or None."""
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        return f"must be a string of 1 to {limit} characters, got {value!r}"
    if "\x00" in value:
        return NUL_PROBLEM
    try:
        value.encode()
    except UnicodeEncodeError:
        return SURROGATE_PROBLEM
    return None


def step_problem(step: Any) -> str | None:
    """Why ``step`` cannot be stored, or None (no step is fine)."""
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        return f"must be an integer from 0 to {MAX_STEP} (the audit's step column), got {step!r}"
    return None


def sample_id_of(columns: Mapping[str, Any]) -> str | None:
    """The sample id the audit records: the ``id`` column, else ``sample_id``, as text."""
    value = columns.get("id", columns.get("sample_id"))
    return None if value is None else str(value)


def sample_id_problem(columns: Mapping[str, Any]) -> tuple[str, str] | None:
    """(column, why) when a sample's id cannot be stored in the audit, or None."""
    for column in ("id", "sample_id"):
        if columns.get(column) is None:
            continue
        text = str(columns[column])
        if len(text) > MAX_SAMPLE_ID:
            return column, f"is {len(text)} characters, over the audit store's limit of {MAX_SAMPLE_ID}"
        if "\x00" in text:
            return column, NUL_PROBLEM
    return None


def queue_for(reward: str) -> str:
    """The queue a reward's tasks travel on."""
    return QUEUE_PREFIX + reward


GroupName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_GROUP_NAME, pattern=NO_NUL)]


class ChatMessage(TypedDict, total=False):
    """One chat message: a ``role`` (required), its ``content`` (text, a list of parts, or null);
    keys beyond those (tool calls, names) travel untouched."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    role: Required[str]
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
    group: GroupName | None = Field(default=None, exclude_if=lambda group: group is None)
    """The sample's group (:mod:`rewardq.wire.groups`); None: the samples with its prompt. Left out of
    the wire form when None, as a trainer's rows without one carry none."""

    @field_validator("columns")
    @classmethod
    def _storable_id(cls, columns: dict[str, Any]) -> dict[str, Any]:
        if "id" in columns or "sample_id" in columns:
            problem = sample_id_problem(columns)
            if problem is not None:
                raise PydanticCustomError(
                    AUDIT_LIMIT_ERROR, "{message}", {"column": problem[0], "message": problem[1]}
                )
        return columns

    @property
    def group_key(self) -> str:
        """What the sample's group members share: its ``group``, else its prompt."""
        return group_key(self.group, self.prompt)

    @property
    def completion_text(self) -> str:
        """The completion as text: a string as is, or the assistant messages' text joined."""
        if isinstance(self.completion, str):
            return self.completion
        return "".join(message_text(m) for m in self.completion if m.get("role", "assistant") == "assistant")


@functools.cache
def samples_checker() -> SchemaValidator:
    """The :class:`Sample` model's own rules as a validator of a list of plain dicts in its wire form.

    It is the model's core schema without the model around it: the same checks, but no model object is
    built per row (about half the time for a batch), which is what a producer needs. Sample has no
    model-level validators that this would skip; tests/producer/test_samples.py checks that producer
    and worker agree.
    """
    schema: Any = Sample.__pydantic_core_schema__
    definitions = []
    if schema["type"] == "definitions":
        definitions, schema = schema["definitions"], schema["schema"]
    if schema["type"] != "model" or schema["schema"]["type"] != "model-fields":
        raise TypeError(f"unexpected core schema for Sample: {schema['type']}")
    return SchemaValidator(
        core_schema.definitions_schema(core_schema.list_schema(schema["schema"]), definitions)
    )


class TaskEnvelope(BaseModel):
    """A task's payload with its samples not yet validated: what a worker checks first."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = SCHEMA_VERSION
    batch_id: BatchId
    run_id: RunId
    step: Step | None = None
    reward: RewardName
    offset: Annotated[int, Field(ge=0)] = 0
    samples: Annotated[list[Any], Field(min_length=1)]


class ScoreTask(TaskEnvelope):
    """One chunk of a batch for one reward: the payload of a ``rewardq.score`` task."""

    samples: Annotated[list[Sample], Field(min_length=1)]

    @classmethod
    def payload(
        cls,
        samples: list[dict[str, Any]],
        *,
        batch_id: str,
        run_id: str,
        step: int | None,
        reward: str,
        offset: int,
        stored: bool = False,
    ) -> dict[str, Any]:
        """The JSON payload of a task whose fields and samples (in their wire form) are already checked.

        The model dumps the envelope, version included; the samples are attached as they are, since
        dumping them again through the model would cost about 45 µs per 64 samples (docs/design.md);
        tests/producer/test_payload.py checks that the result is the model's own dump. ``stored``: the
        samples are stored under their chunk's key, and the payload carries only their count."""
        task = cls.model_construct(
            batch_id=batch_id, run_id=run_id, step=step, reward=reward, offset=offset, samples=samples
        )
        envelope = task.model_dump(mode="json", exclude={"samples"})
        return envelope | ({STORED: len(samples)} if stored else {"samples": samples})


STORED = "stored"
"""The payload field that stands for samples stored in Redis: their count."""


def stored_reference(payload: Any) -> tuple[str, int] | None:
    """The Redis key and count of a payload's stored samples, or None when it carries none (its samples
    inline, or a payload too malformed to name a key: validation says what is wrong with it)."""
    if not isinstance(payload, Mapping) or STORED not in payload:
        return None
    count, batch_id, offset = payload[STORED], payload.get("batch_id"), payload.get("offset", 0)
    if not (isinstance(batch_id, str) and type(offset) is int and type(count) is int):
        return None
    if not 0 < count <= MAX_CHUNK_SIZE:
        return None
    return samples_key(batch_id, offset), count


def sample_count(payload: Any) -> int:
    """How many samples a payload holds, inline or stored (0 when it says nothing it may hold)."""
    samples = payload.get("samples") if isinstance(payload, Mapping) else None
    if isinstance(samples, list):
        return len(samples)
    reference = stored_reference(payload)
    return 0 if reference is None else reference[1]


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
