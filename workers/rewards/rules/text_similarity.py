"""The ``text_similarity`` reward: OpenAI's text similarity grader, applied to a completion and a reference.

The value is a similarity in [0, 1] between the completion and its reference under one
``evaluation_metric`` (fuzzy match, BLEU, Google BLEU or ROUGE), or, with ``pass_threshold`` set,
1.0/0.0 for passing it. The metric's scorer is built once per reward, on first use. Semantics and
options are documented in ``docs/rewards-text.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.rules.reference import ReferenceOptions, ReferenceReward

Metric = Literal[
    "fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]
METRICS: tuple[Metric, ...] = get_args(Metric)

# OpenAI metrics this kind does not offer, and why.
UNSUPPORTED = {
    "meteor": "needs NLTK's WordNet corpus, which is downloaded at run time",
    "cosine": "needs an embedding model (OpenAI's uses text-embedding-3-large)",
}

Similarity = Callable[[str, str], float]
"""A metric's scorer: (completion, reference) -> similarity in [0, 1]."""


class TextSimilarityOptions(ReferenceOptions):
    """Options of ``text_similarity``."""

    evaluation_metric: Metric = "fuzzy_match"
    """The similarity metric (default ``fuzzy_match``); see ``METRICS``."""
    pass_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """When set, the value is 1.0 if the similarity is at least this, else 0.0."""

    @field_validator("evaluation_metric", mode="before")
    @classmethod
    def _supported(cls, value: Any) -> Any:
        if value not in METRICS:
            why = f" ({UNSUPPORTED[value]})" if isinstance(value, str) and value in UNSUPPORTED else ""
            raise ValueError(f"unsupported metric {value!r}{why}; supported: {', '.join(METRICS)}")
        return value


class TextSimilarityReward(ReferenceReward):
    """The similarity of the completion to its reference, or 1.0/0.0 against ``pass_threshold``."""

    kind = "text_similarity"
    Options = TextSimilarityOptions
    options: TextSimilarityOptions

    @cached_property
    def _similarity(self) -> Similarity:
        return build_similarity(self.options.evaluation_metric)

    def score_pairs(self, completions: list[str], references: list[str]) -> list[Score]:
        return [
            self._score_one(text, reference) for text, reference in zip(completions, references, strict=True)
        ]

    def _score_one(self, text: str, reference: str) -> Score:
        try:
            similarity = min(max(self._similarity(text, reference), 0.0), 1.0)
        except Exception as e:  # a library failing on one odd text must not fail the chunk
            return Score.failed(f"{self.options.evaluation_metric}: {type(e).__name__}: {e}")
        threshold = self.options.pass_threshold
        if threshold is None:
            return Score.ok(similarity)
        return Score.ok(1.0 if similarity >= threshold else 0.0, raw=repr(similarity))


def build_similarity(metric: Metric) -> Similarity:
    """The scorer for ``metric``; its library is imported here, not when this module is."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return lambda text, reference: fuzz.ratio(text, reference) / 100
    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU(effective_order=True)  # the settings of sacrebleu.sentence_bleu
        return lambda text, reference: bleu.sentence_score(text, [reference]).score / 100
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        tokenize = Tokenizer13a()
        return lambda text, reference: float(
            sentence_gleu([tokenize(reference).split()], tokenize(text).split())
        )
    from rouge_score.rouge_scorer import RougeScorer

    rouge_type = "rougeL" if metric == "rouge_l" else "rouge" + metric.removeprefix("rouge_")
    scorer = RougeScorer([rouge_type])
    return lambda text, reference: scorer.score(reference, text)[rouge_type].fmeasure
