"""The foreign protocols' request and answer bodies, as their callers send and read them.

Each shape was read from the caller's own source (docs/gateway.md names the files and commits):
OpenRLHF's remote reward model (``/get_reward``), slime's ``--rm-url`` (``remote_rm``) and vLLM's
``/classify`` as verl's reward loop calls it. Each request turns into rewardq rows (``rows``); fields a
caller sends that rewardq has no use for are ignored, as those servers ignore them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Row = dict[str, Any]
Value = float | None
Message = dict[str, Any]


def _row(completion: str, prompt: str | list[Message] | None, label: Any, label_field: str) -> Row:
    row: Row = {"completion": completion}
    if prompt is not None:
        row["prompt"] = prompt
    if label is not None:
        row[label_field] = label
    return row


class _Foreign(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OpenRLHFRequest(_Foreign):
    """OpenRLHF's body: ``query`` (prompt and completion as one decoded text), ``prompts``, ``labels``,
    one entry each per sample (OpenRLHF ≥ 0.9.1 sends one sample per request, 0.9.0 a whole shard)."""

    query: list[str] = Field(min_length=1, description="Each sample's prompt and completion, decoded.")
    prompts: list[str] | None = Field(default=None, description="Each sample's prompt (stripped from query).")
    labels: list[Any] | None = Field(default=None, description="Each sample's label (the reference).")

    @model_validator(mode="after")
    def _one_each(self) -> OpenRLHFRequest:
        for name in ("prompts", "labels"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.query):
                raise ValueError(f"{name} has {len(values)} entries for {len(self.query)} queries")
        return self

    def rows(self, label_field: str) -> list[Row]:
        """The completion is the query without its prompt (when the query starts with it)."""
        out = []
        for i, query in enumerate(self.query):
            prompt = self.prompts[i] if self.prompts is not None else None
            completion = query[len(prompt) :] if prompt and query.startswith(prompt) else query
            label = self.labels[i] if self.labels is not None else None
            out.append(_row(completion, prompt, label, label_field))
        return out


class OpenRLHFAnswer(BaseModel):
    """What OpenRLHF reads: ``rewards`` (advantages), ``scores`` (dynamic filtering) and ``extra_logs``
    (logged per key): here the weighted totals, the same totals, and each reward's own values."""

    rewards: list[Value]
    scores: list[Value]
    extra_logs: dict[str, list[Value]]


class SlimeRequest(_Foreign):
    """slime's ``remote_rm`` body: one sample's ``prompt`` (text or chat messages), ``response`` and
    ``label``."""

    prompt: str | list[Message] = Field(description="The sample's prompt: text or chat messages.")
    response: str = Field(description="The completion.")
    label: Any = Field(default=None, description="The sample's label (the reference).")

    def rows(self, label_field: str) -> list[Row]:
        return [_row(self.response, self.prompt or None, self.label, label_field)]


class ClassifyRequest(_Foreign):
    """vLLM's ``/classify`` body as verl's reward loop sends it: ``model``, ``input`` (the chat-templated
    prompt and response) and ``use_activation`` (``activation`` before vLLM 0.11.2). A text is scored
    as a completion with no prompt; ``messages`` (vLLM's chat form) ending with the assistant's reply is
    scored as that reply after the rest. Token ids are not accepted: rewardq scores text."""

    model: str | None = None
    input: str | list[str] | None = Field(default=None, description="The text(s) to score.")
    messages: list[Message] | None = Field(default=None, description="A chat ending with the reply to score.")
    use_activation: bool | None = Field(
        default=None, description="Accepted and ignored: rewards are not logits."
    )

    @model_validator(mode="after")
    def _one_input(self) -> ClassifyRequest:
        if (self.input is None) == (self.messages is None):
            raise ValueError("give either input (text) or messages")
        if self.input is not None and (self.input == "" or self.input == []):
            raise ValueError("input is empty")
        return self

    def rows(self, label_field: str) -> list[Row]:
        if self.messages is not None:
            return [{"messages": self.messages}]
        texts = [self.input] if isinstance(self.input, str) else list(self.input or [])
        return [{"completion": text} for text in texts]


class ClassificationData(BaseModel):
    index: int
    label: str | None
    probs: list[Value]
    num_classes: int


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: dict[str, int] | None = None


class ClassificationResponse(BaseModel):
    """vLLM's answer: one ``data`` item per input, its ``probs`` the one value ``[total]`` (verl reads
    ``data[-1].probs[-1]``). Tokens are not counted (``usage`` is zeros)."""

    id: str = Field(default_factory=lambda: f"classify-{uuid.uuid4().hex}")
    object: str = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[ClassificationData]
    usage: UsageInfo = Field(default_factory=UsageInfo)
