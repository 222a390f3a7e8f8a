"""Options of the server-backed kinds: where the servers are and how hard to push them (``ServerOptions``,
shared by ``judge``, ``pairwise_judge``, ``group_judge`` and ``remote_reward_model``), how a chat judge is
asked (``ChatOptions``, the three judges) and how ``judge`` reads a grade (``JudgeOptions``).

Validation is pydantic only: it never imports the HTTP client, and never reads the API key's variable.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from rewardq.workers.rewards.base import RewardOptions
from rewardq.workers.rewards.judges.prompts import DEFAULT_JUDGE_TEMPLATE

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_CACHE_TTL = 7 * 24 * 3600


def _regex(value: str | None, field: str) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"{field} is not a valid regular expression: {e}") from e
    return value


class ServerOptions(RewardOptions):
    """Servers, model, key, concurrency, timeouts, retries and the result cache."""

    base_url: tuple[str, ...]
    """One OpenAI-compatible base URL (``http://host:8000/v1``) or a list of replicas; load is spread."""
    model: str | None = None
    """The served model name; discovered from ``GET {base_url}/models`` at start-up when omitted."""
    api_key_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    """The name of the environment variable holding the API key (the key itself is never stored)."""
    max_concurrency: Annotated[int, Field(ge=1, le=4096)] = 64
    """Requests in flight per worker process, shared by every task of the process."""
    request_timeout: Annotated[float, Field(gt=0)] = 60.0
    """Seconds one HTTP attempt may take."""
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    """Retries of one request on connection errors, timeouts, 408/409/429 and 5xx (with backoff)."""
    task_timeout: Annotated[float, Field(gt=0)] = 600.0
    """Seconds one task may spend on its requests; samples still pending then are ``timeout``."""
    cache: bool = True
    """Reuse results of identical requests (within a task, and across tasks through the worker cache)."""
    cache_ttl: Annotated[int, Field(ge=1)] = DEFAULT_CACHE_TTL
    """Seconds a cached result lives."""

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        urls = [value] if isinstance(value, str) else value
        if not isinstance(urls, list | tuple) or not urls:
            raise ValueError("give one URL or a non-empty list of URLs")
        for url in urls:
            if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"{url!r} is not an http(s) URL")
        if len(set(urls)) != len(urls):
            raise ValueError("the same URL is listed twice")
        return tuple(u.rstrip("/") for u in urls)


class StructuredOutput(BaseModel):
    """vLLM structured output (``extra_body.structured_outputs``): exactly one of choice, regex, json."""

    model_config = RewardOptions.model_config  # a nested table: strict as the options, no ``timeout``

    choice: Annotated[list[str], Field(min_length=1)] | None = None
    """The reply is one of these strings."""
    regex: str | None = None
    """The reply matches this regular expression."""
    json_schema: Annotated[dict[str, Any] | None, Field(alias="json")] = None
    """The reply is a JSON object following this schema; the verdict is its ``field``."""
    field: str = "score"
    """With ``json``: the key of the object that holds the verdict."""

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutput:
        given = [k for k in ("choice", "regex", "json_schema") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of `choice`, `regex` or `json`")
        _regex(self.regex, "`regex`")
        if self.choice is not None and len(set(self.choice)) != len(self.choice):
            raise ValueError("`choice` lists a value twice")
        return self

    def request(self) -> dict[str, Any]:
        """The ``structured_outputs`` object vLLM reads from the request's extra body."""
        if self.choice is not None:
            return {"choice": list(self.choice)}
        if self.regex is not None:
            return {"regex": self.regex}
        return {"json": self.json_schema}


class ChatOptions(ServerOptions):
    """How a chat judge is asked: the prompt, what constrains or reads the reply, the sampling parameters.
    Each judge kind gives ``template`` its own default."""

    system: str | None = None
    """A system message sent before the rendered template."""
    template: Annotated[str, Field(min_length=1)]
    """The user message: ``{prompt}``, ``{reference}`` and any ``{column}`` are filled, and the kind's own
    fields (``{completion}``; ``{completion_a}``, ``{completion_b}``; ``{completions}``)."""
    reference_column: Annotated[str, Field(min_length=1)] = "reference"
    """The column that fills ``{reference}``."""
    parser: str | None = None
    """A regular expression whose first group is the verdict; each kind has its default patterns."""
    structured: StructuredOutput | None = None
    """Constrain the reply (vLLM structured output): ``{choice = [...]}``, ``{regex = "..."}`` or
    ``{json = {...}}``."""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    seed: int | None = None
    """Sampling seed; a re-ask uses ``seed + k`` so that it can answer differently."""
    max_tokens: Annotated[int, Field(ge=1)] = 1024
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Further request fields passed to the server as is (e.g. ``chat_template_kwargs``)."""
    reask: Annotated[int, Field(ge=0, le=10)] = 1
    """How many times a request whose reply did not parse is asked again."""

    @field_validator("parser")
    @classmethod
    def _parser(cls, value: str | None) -> str | None:
        _regex(value, "`parser`")
        if value is not None and re.compile(value).groups != 1:
            raise ValueError("`parser` needs exactly one group: the verdict")
        return value

    @model_validator(mode="after")
    def _request_fields(self) -> ChatOptions:
        if "structured_outputs" in self.extra_body and self.structured is not None:
            raise ValueError("set structured output with `structured`, not in `extra_body`")
        reserved = sorted({"model", "messages", "n", "seed", "max_tokens"} & set(self.extra_body))
        if reserved:
            raise ValueError(f"`extra_body` may not set {reserved}: they are options of their own")
        return self

    def structured_output(self) -> StructuredOutput | None:
        """What constrains the reply."""
        return self.structured


class JudgeOptions(ChatOptions):
    """Options of ``judge``: the prompt, how the grade is read, and the sampling parameters."""

    template: Annotated[str, Field(min_length=1)] = DEFAULT_JUDGE_TEMPLATE
    """The user message: ``{prompt}``, ``{completion}``, ``{reference}`` and any ``{column}`` are filled."""
    score_range: tuple[float, float] | None = None
    """The verdict's scale, e.g. ``[1, 10]``: values are mapped to [0, 1] (outside it: an error).
    Defaults to ``[0, 10]`` with the default template (which asks for 0 to 10), else none."""
    labels: Annotated[list[str], Field(min_length=2)] | None = None
    """Label grading (OpenAI's label_model grader): the reply is one of these labels."""
    passing_labels: Annotated[list[str], Field(min_length=1)] | None = None
    """The labels that score 1.0; every other label scores 0.0."""
    n: Annotated[int, Field(ge=1, le=32)] = 1
    """Replies per request; the value is their mean (self-consistency)."""

    @model_validator(mode="before")
    @classmethod
    def _default_scale(cls, data: Any) -> Any:
        return default_scale(data, {"labels"})

    @model_validator(mode="after")
    def _consistent(self) -> JudgeOptions:
        if (self.labels is None) != (self.passing_labels is None):
            raise ValueError("`labels` and `passing_labels` go together")
        if self.labels is not None and self.passing_labels is not None:
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("`labels` lists a label twice")
            unknown = sorted(set(self.passing_labels) - set(self.labels))
            if unknown:
                raise ValueError(f"`passing_labels` {unknown} are not among `labels`")
            if self.score_range is not None:
                raise ValueError("`score_range` does not apply to label grading")
            choice = self.structured.choice if self.structured is not None else None
            if choice is not None and set(choice) - set(self.labels):
                raise ValueError("`structured.choice` may only list `labels`")
        check_range(self.score_range)
        return self

    @model_serializer(mode="wrap")
    def _fingerprinted_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields in the order they had before :class:`ChatOptions` was split out of this class: a
        fingerprint hashes the dump, and a run's scorer must not change with the refactoring."""
        data: dict[str, Any] = handler(self)
        return {k: data[k] for k in _JUDGE_DUMP_ORDER if k in data} | data

    def structured_output(self) -> StructuredOutput | None:
        """What constrains the reply: ``structured``, or the labels as a choice in label grading."""
        if self.structured is None and self.labels is not None:
            return StructuredOutput(choice=list(self.labels))
        return self.structured


_JUDGE_DUMP_ORDER = (
    *ServerOptions.model_fields,
    *("system", "template", "reference_column", "parser", "structured", "score_range", "labels"),
    *("passing_labels", "temperature", "top_p", "seed", "n", "max_tokens", "extra_body", "reask"),
)


def default_scale(data: Any, also: set[str]) -> Any:
    """A kind's default template asks for grades from 0 to 10: read them on that scale unless the options
    set ``template``, ``score_range``, ``structured`` or one of ``also``."""
    if isinstance(data, dict) and not {"template", "score_range", "structured", *also} & set(data):
        return {**data, "score_range": (0.0, 10.0)}
    return data


def check_range(score_range: tuple[float, float] | None) -> None:
    """A ``score_range`` is ``[low, high]`` with low < high."""
    if score_range is not None and not score_range[0] < score_range[1]:
        raise ValueError("`score_range` must be [low, high] with low < high")
