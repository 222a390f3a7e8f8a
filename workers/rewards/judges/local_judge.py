"""The ``local_judge`` reward: a small generative judge run inside the worker with transformers
``generate``; its reply's verdict, normalised to [0, 1] when ``score_range`` is set, is the reward.

Each sample becomes a chat (``system``, then ``template`` filled from the sample) rendered with the
judge's own chat template; chats are generated in length-sorted, left-padded batches
(:mod:`rewardq.workers.rewards.models.generation`), greedy by default or sampled with a per-sample seed, so a
sample's reply does not depend on its batch. The reply is read by ``parser`` (default: ``[[n]]`` or
``Reward: x``); a reply without a verdict, or with conflicting ones, is an ``error`` that keeps the
reply for the audit, never a 0. ``preset = "swift_genrm"`` is ms-swift's ``GenRMPlugin``
(:mod:`rewardq.workers.rewards.judges.swift_genrm`). Semantics and options: ``docs/rewards-models.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, Score, ScoreMeta
from rewardq.workers.rewards.judges import swift_genrm
from rewardq.workers.rewards.judges.prompts import (
    DEFAULT_JUDGE_TEMPLATE,
    TemplateFieldError,
    check_template,
    render,
    template_hash,
)
from rewardq.workers.rewards.judges.verdicts import parse_verdict
from rewardq.workers.rewards.models.generation import BatchGenerator, Decoding, Reply
from rewardq.workers.rewards.models.loading import ModelOptions, load_shared, model_identity

if TYPE_CHECKING:
    from rewardq.workers.process.resources import WorkerResources

PRESET_FIELDS = ("system", "template", "parser")
GENERATIVE_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
"""Architecture name endings of models with a language-modelling head (a judge must generate)."""


class LocalJudgeOptions(ModelOptions):
    """Options of ``local_judge``: the judge (``model``, ``revision``, ``dtype``), then these."""

    preset: Literal["swift_genrm"] | None = None
    """A prompt and parser of another framework; excludes ``system``, ``template`` and ``parser``."""
    system: str | None = None
    """The judge's system message (none by default)."""
    template: str | None = Field(default=None, min_length=1)
    """The user message: ``{prompt}``, ``{completion}``, ``{reference}`` and any ``{column}`` are filled
    in; default: rewardq's judge template, which asks for a grade from 0 to 10 as ``[[n]]``."""
    parser: str | None = None
    """A regex with one group that captures the verdict; default: ``[[n]]`` or ``Reward: x``."""
    reference_column: str = Field(default="reference", min_length=1)
    """The column ``{reference}`` reads; a sample without it is ``unscorable``."""
    max_new_tokens: int = Field(default=256, ge=1)
    """Tokens the judge may generate; a reply cut there is flagged ``truncated`` in the audit."""
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    """A judge prompt longer than this is that sample's ``error`` instead of being generated."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 (default): greedy decoding; above 0: sampling, reproducible through ``seed``."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Sampling only: keep the most likely tokens that make up this much probability."""
    top_k: int | None = Field(default=None, ge=1)
    """Sampling only: keep this many most likely tokens."""
    seed: int = 0
    """Sampling only: with the sample's prompt, seeds that sample's own random stream."""
    score_range: tuple[float, float] | None = None
    """``[low, high]`` of the judge's scale: the verdict is mapped to [0, 1] (outside it: an error).
    Defaults to ``[0, 10]`` with the default template, else none (the verdict as is)."""
    batch_size: int = Field(default=16, ge=1)
    """Sequences per ``generate`` call."""
    token_budget: int | None = Field(default=None, ge=1)
    """Padded tokens per ``generate`` call (rows * (longest prompt + ``max_new_tokens``))."""

    @model_validator(mode="before")
    @classmethod
    def _default_scale(cls, data: Any) -> Any:
        """The default template asks for a grade from 0 to 10: read it on that scale unless told otherwise."""
        if isinstance(data, dict) and not {"template", "score_range", "preset"} & set(data):
            return {**data, "score_range": (0.0, 10.0)}
        return data

    @field_validator("template")
    @classmethod
    def _parsable(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value

    @field_validator("parser")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            groups = re.compile(value).groups
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from e
        if groups != 1:
            raise ValueError(f"needs exactly one capturing group (the verdict), has {groups}")
        return value

    @field_validator("score_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"must be [low, high] with low < high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _preset_alone(self) -> LocalJudgeOptions:
        if self.preset is not None:
            clashing = [name for name in PRESET_FIELDS if getattr(self, name) is not None]
            if clashing:
                raise ValueError(f"preset {self.preset!r} sets {', '.join(clashing)}; leave them out")
        return self

    @property
    def decoding(self) -> Decoding:
        return Decoding(self.max_new_tokens, self.temperature, self.top_p, self.top_k, self.seed)


class LocalJudgeReward(Reward):
    """The verdict of a generative judge run in the worker, read from its reply."""

    kind = "local_judge"
    Options = LocalJudgeOptions
    options: LocalJudgeOptions
    holds_model: ClassVar[bool] = True
    timeout_default = 600.0  # generation: a chunk's whole completions

    _generator: BatchGenerator | None = None

    def __init__(self, name: str, options: LocalJudgeOptions) -> None:
        super().__init__(name, options)
        self._pattern = swift_genrm.PATTERN if options.preset == "swift_genrm" else options.parser
        self._system = swift_genrm.SYSTEM if options.preset == "swift_genrm" else options.system
        self._template = options.template or DEFAULT_JUDGE_TEMPLATE
        prompt_spec = f"preset:{options.preset}" if options.preset else self._template
        self._template_hash = template_hash(f"{self._system or ''}\n\n{prompt_spec}")

    def identity(self) -> dict[str, str]:
        return model_identity(self.options.model, self.options.revision)

    def setup(self, resources: WorkerResources) -> None:
        self._generator = load_shared(resources, "causal-lm", self.options, _load_generator, reward=self.name)

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        generator = self._generator
        if generator is None:
            raise RewardSetupError(f"reward {self.name!r} is not set up: call setup() before score()")
        scores: list[Score | None] = []
        prompts: list[list[int]] = []
        for sample in samples:
            prompt = self._prompt_tokens(generator, sample)
            if isinstance(prompt, Score):
                scores.append(prompt)
            else:
                scores.append(None)
                prompts.append(prompt)
        options = self.options
        replies = iter(
            generator.generate(prompts, options.decoding, options.batch_size, options.token_budget)
        )
        return [score if score is not None else self._verdict(next(replies)) for score in scores]

    def chat(self, sample: Sample) -> list[dict[str, str]]:
        """The judge's messages for ``sample``; raises :class:`TemplateFieldError` for a missing field."""
        if self.options.preset == "swift_genrm":
            user = swift_genrm.query(swift_genrm.conversation(sample))
        else:
            user = render(self._template, sample, self.options.reference_column)
        system = [] if self._system is None else [{"role": "system", "content": self._system}]
        return [*system, {"role": "user", "content": user}]

    def _prompt_tokens(self, generator: BatchGenerator, sample: Sample) -> list[int] | Score:
        try:
            chat = self.chat(sample)
        except TemplateFieldError as e:
            if e.field == "reference":
                return Score.unscorable(f"no reference: column {self.options.reference_column!r} is missing")
            return Score.failed(str(e))
        tokenizer = generator.tokenizer
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.options.max_prompt_tokens
        if limit is not None and len(ids) > limit:
            return Score.failed(
                f"judge prompt is {len(ids)} tokens, over max_prompt_tokens={limit}",
                meta=ScoreMeta(prompt_tokens=len(ids), template_hash=self._template_hash),
            )
        return ids

    def _verdict(self, reply: Reply) -> Score:
        meta = ScoreMeta(
            truncated=not reply.finished,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            template_hash=self._template_hash,
        )
        verdict = parse_verdict(reply.text, self._pattern, self.options.score_range)
        if verdict.value is None:
            cut = f" (cut at max_new_tokens={self.options.max_new_tokens})" if not reply.finished else ""
            return Score.failed(f"judge reply: {verdict.error}{cut}", raw=reply.text, meta=meta)
        return Score.ok(verdict.value, raw=reply.text, meta=meta)


def _load_generator(path: Path, dtype: Any, device: str) -> BatchGenerator:
    """The judge's tokenizer and causal LM from local files (``path``: the revision's snapshot), on
    ``device`` in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    architectures = AutoConfig.from_pretrained(path, local_files_only=True).architectures
    if architectures and not any(a.endswith(GENERATIVE_HEADS) for a in architectures):
        raise RewardSetupError(
            f"the model at {path} is not a generative LM (architectures: {', '.join(architectures)})"
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not tokenizer.chat_template:
        raise RewardSetupError(f"the judge's tokenizer at {path} has no chat template")
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return BatchGenerator(model.to(device).eval(), tokenizer)
