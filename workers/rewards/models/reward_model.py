"""The ``reward_model`` reward: a sequence-classification model whose logit is the reward.

As TRL and verl score with a reward model: the prompt and completion are rendered with the reward
model's own chat template (never the policy's), the model runs once over the rendered tokens, and
the value is the logit of its single label (``label = i`` picks one of several) at the last real
token, then ``(logit - shift) * scale``, clipped to ``clip`` if set. Samples are packed into forward
passes of at most ``token_budget`` padded tokens; a sample's reward does not depend on what it is
batched with. The model is loaded in ``setup`` (once per process per path, revision, dtype and
device). Semantics and options are documented in ``docs/rewards-models.md``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, Score, ScoreMeta
from rewardq.workers.rewards.models.batching import pack
from rewardq.workers.rewards.models.chat_tokens import Encoded, Tokenized, Truncation, tokenize
from rewardq.workers.rewards.models.loading import ModelOptions, load_shared, model_identity

if TYPE_CHECKING:
    from rewardq.workers.process.resources import WorkerResources
    from rewardq.workers.rewards.models.classifier import Classifier

log = logging.getLogger(__name__)
R = TypeVar("R")


class BatchedModelOptions(ModelOptions):
    """Options of the kinds that batch a classifier by tokens (``reward_model``, ``process_reward_model``):
    the model (``model``, ``revision``, ``dtype``), then these."""

    label: int | None = Field(default=None, ge=0)
    """Which logit is the reward; required when the head has several labels."""
    max_length: int | None = Field(default=None, ge=1)
    """Longest input in tokens; default the model's maximum length, at most ``token_budget``."""
    truncation: Truncation = "left"
    """Too long an input: ``left`` drops prompt tokens from the left (flagged ``truncated`` in the
    audit), ``unscorable`` scores nothing."""
    token_budget: int = Field(default=16384, ge=1)
    """Padded tokens (rows * longest row) per forward pass."""
    template: str | None = Field(default=None, min_length=1)
    """A Jinja chat template to render with, for a model that has none (it overrides the model's)."""

    @model_validator(mode="after")
    def _fits_a_pass(self) -> BatchedModelOptions:
        if self.max_length is not None and self.max_length > self.token_budget:
            raise ValueError(
                f"max_length ({self.max_length}) exceeds token_budget ({self.token_budget}): "
                "an input of max_length tokens would not fit in one forward pass"
            )
        return self


class RewardModelOptions(BatchedModelOptions):
    """Options of ``reward_model``: those of :class:`BatchedModelOptions`, then these."""

    shift: float = 0.0
    """Subtracted from the logit."""
    scale: float = 1.0
    """Multiplies the shifted logit."""
    clip: tuple[float, float] | None = None
    """``[low, high]``: the value is clipped to this range after shift and scale."""

    @field_validator("shift", "scale")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RewardModelOptions:
        if self.clip is not None and not self.clip[0] < self.clip[1]:
            raise ValueError(f"clip must be [low, high] with low < high, got {list(self.clip)}")
        return self


class RewardModelReward(Reward):
    """The (shifted, scaled, clipped) logit of a sequence classifier at the last real token."""

    kind = "reward_model"
    Options = RewardModelOptions
    options: RewardModelOptions
    holds_model: ClassVar[bool] = True
    timeout_default = 300.0
    head: ClassVar[Literal["sequence", "token"]] = "sequence"
    """The classification head the model must have."""

    _classifier: Classifier | None = None
    _tokenizer: Any = None
    _max_length: int | None = None

    def identity(self) -> dict[str, str]:
        identity = model_identity(self.options.model, self.options.revision)
        if self.options.template is not None:
            identity["template"] = hashlib.sha256(self.options.template.encode()).hexdigest()[:16]
        return identity

    def setup(self, resources: WorkerResources) -> None:
        from rewardq.workers.rewards.models.classifier import load_classifier

        opts = self.options
        # A missing path, no classification head (ClassifierLoadError), out of memory: load_shared
        # turns each into a RewardSetupError naming the reward and the path.
        classifier = load_shared(
            resources,
            f"{self.head}_classification",
            opts,
            functools.partial(load_classifier, head=self.head),
            reward=self.name,
        )
        self._check_head(classifier)
        if opts.template is None and not getattr(classifier.tokenizer, "chat_template", None):
            raise RewardSetupError(
                f"reward {self.name!r}: model {opts.model} has no chat template; set the `template` option "
                "to the chat template its reward head was trained with"
            )
        self._classifier = classifier
        self._tokenizer = _with_template(classifier.tokenizer, opts.template)
        self._max_length = opts.max_length or _model_max_length(classifier, opts.token_budget)
        self._warm_up()

    def _check_head(self, classifier: Classifier) -> None:
        labels, label = classifier.num_labels, self.options.label
        if label is None and labels != 1:
            raise RewardSetupError(
                f"reward {self.name!r}: model {self.options.model} has {labels} labels; "
                "set `label` to the index of the one that is the reward"
            )
        if label is not None and label >= labels:
            raise RewardSetupError(
                f"reward {self.name!r}: label {label} is out of range for model {self.options.model}, "
                f"whose head has {labels} label(s)"
            )

    def _warm_up(self) -> None:
        """One forward pass before the worker consumes (on a GPU, a full token budget: memory fails now)."""
        import torch

        classifier = self._ready()
        rows = 1
        length = 8
        if classifier.device != "cpu" and self._max_length is not None:
            length = self._max_length
            rows = max(1, self.options.token_budget // length)
        try:
            ids = torch.full((rows, length), classifier.pad_id, dtype=torch.long, device=classifier.device)
            classifier.run(ids, torch.full((rows,), length, device=classifier.device), self._label)
        except torch.OutOfMemoryError as e:
            raise RewardSetupError(
                f"reward {self.name!r}: out of memory running model {self.options.model} on a forward pass "
                f"of {rows} x {length} tokens; lower token_budget or max_length"
            ) from e

    @property
    def _label(self) -> int:
        return self.options.label or 0

    def _ready(self) -> Classifier:
        if self._classifier is None:
            raise RuntimeError(
                f"reward {self.name!r} was not set up: the worker calls setup() before score()"
            )
        return self._classifier

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        classifier = self._ready()
        tokens = tokenize(self._tokenizer, samples)
        encoded, logits = self._fit_and_run(
            tokens, lambda _, rows, passes: classifier.run_passes(rows, passes, self._label)
        )
        scores = [Score.unscorable(e.problem or "not scorable", meta=encoded_meta(e)) for e in encoded]
        for i, logit in logits.items():
            scores[i] = self._value(logit, encoded[i])
        return scores

    def _fit_and_run(
        self, tokens: Tokenized, forward: Callable[[list[int], list[list[int]], list[list[int]]], list[R]]
    ) -> tuple[list[Encoded], dict[int, R]]:
        """Each input within ``max_length`` (:class:`Encoded`, for the audit) and ``forward(scorable, rows,
        passes)``'s result per scorable input: ``rows`` are the token ids of the inputs ``scorable`` names,
        ``passes`` packs them by ``token_budget``."""
        count = len(tokens.ids)
        limit = self._max_length

        def fit(i: int) -> Encoded:
            return tokens.fit(i, limit, self.options.truncation)

        # Only an input over max_length needs its prompt tokens counted before packing (which to drop);
        # the others' counts, for the audit, are taken by a helper thread while the passes run.
        cut = {i: fit(i) for i in range(count) if limit is not None and len(tokens.ids[i]) > limit}
        inputs = [cut[i].ids if i in cut else tokens.ids[i] for i in range(count)]
        scorable = [i for i in range(count) if inputs[i] is not None]
        rows = [inputs[i] or [] for i in scorable]
        packing = pack([len(r) for r in rows], self.options.token_budget)
        with ThreadPoolExecutor(1, thread_name_prefix="rewardq-counts") as helper:
            counting = helper.submit(lambda: [cut[i] if i in cut else fit(i) for i in range(count)])
            outputs = forward(scorable, rows, packing.passes)
            encoded = counting.result()
        log.info(
            "reward %s: %d samples in %d forward passes, padding efficiency %.3f",
            self.name,
            len(rows),
            len(packing.passes),
            packing.efficiency,
        )
        return encoded, dict(zip(scorable, outputs, strict=True))

    def _value(self, logit: float, encoded: Encoded) -> Score:
        if not math.isfinite(logit):
            return Score.failed(
                f"the model returned a non-finite logit ({logit})", meta=encoded_meta(encoded)
            )
        value = (logit - self.options.shift) * self.options.scale
        if self.options.clip is not None:
            value = min(max(value, self.options.clip[0]), self.options.clip[1])
        return Score.ok(value, meta=encoded_meta(encoded))


def encoded_meta(encoded: Encoded) -> ScoreMeta:
    return ScoreMeta(
        truncated=encoded.truncated,
        prompt_tokens=encoded.prompt_tokens,
        completion_tokens=encoded.completion_tokens,
    )


def _model_max_length(classifier: Classifier, token_budget: int) -> int:
    """The model's own limit (tokenizer, else config), at most the token budget."""
    limits = [
        getattr(classifier.tokenizer, "model_max_length", None),
        getattr(classifier.model.config, "max_position_embeddings", None),
    ]
    known = [int(v) for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(known[0], token_budget) if known else token_budget


def _with_template(tokenizer: Any, template: str | None) -> Any:
    """The tokenizer to render with: the model's, or a shallow copy carrying ``template``."""
    if template is None:
        return tokenizer
    import copy

    own = copy.copy(tokenizer)  # the shared model's tokenizer keeps its own template
    own.chat_template = template
    return own
