"""Tests of the ``text_similarity`` reward kind: each metric's values, thresholds, options, bad samples."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.rules import text_similarity
from rewardq.workers.rewards.rules.text_similarity import METRICS, TextSimilarityReward

CAT = "the cat sat on the mat"
CAT_REFERENCE = "the cat is on the mat"


def reward(**options: Any) -> TextSimilarityReward:
    return TextSimilarityReward("similarity", TextSimilarityReward.Options(**options))


def similarity(metric: str, completion: str, reference: str) -> float | None:
    [score] = reward(evaluation_metric=metric).score(
        [Sample(completion=completion, columns={"reference": reference})]
    )
    assert score.status == "ok", score.error
    return score.value


@pytest.mark.parametrize("metric", METRICS)
def test_identical_text_is_one(metric: str) -> None:
    assert (
        similarity(
            metric,
            "the quick brown fox jumps over the lazy dog",
            "the quick brown fox jumps over the lazy dog",
        )
        == 1.0
    )


@pytest.mark.parametrize("metric", METRICS)
def test_disjoint_text_is_zero(metric: str) -> None:
    assert similarity(metric, "kappa", "zulu") == 0.0  # no character in common, so no token either


def test_fuzzy_match_is_normalized_indel_similarity() -> None:
    # kitten/sitting: longest common subsequence "ittn" (4), so 1 - (6 + 7 - 2*4) / (6 + 7) = 8/13.
    assert similarity("fuzzy_match", "kitten", "sitting") == pytest.approx(8 / 13)
    assert similarity("fuzzy_match", "Paris", "paris") == pytest.approx(0.8)


def test_bleu_is_sacrebleu_sentence_bleu() -> None:
    import sacrebleu

    expected = sacrebleu.sentence_bleu(CAT, [CAT_REFERENCE]).score / 100
    assert expected == pytest.approx(0.3799, abs=1e-4)
    assert similarity("bleu", CAT, CAT_REFERENCE) == pytest.approx(expected)


def test_gleu_counts_13a_tokens() -> None:
    # 13a splits off the full stops: 7 tokens each side.
    # Matching 1..4-grams: 6 + 4 + 2 + 1 = 13 of 7 + 6 + 5 + 4 = 22 on each side.
    assert similarity("gleu", CAT + ".", CAT_REFERENCE + ".") == pytest.approx(13 / 22)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("rouge_1", 5 / 6),  # the, the, cat, on, mat: 5 of 6 unigrams on each side
        ("rouge_2", 3 / 5),  # "the cat", "on the", "the mat": 3 of 5 bigrams on each side
        ("rouge_3", 1 / 4),  # "on the mat"
        ("rouge_4", 0.0),
        ("rouge_l", 5 / 6),  # longest common subsequence "the cat on the mat"
    ],
)
def test_rouge_fmeasure(metric: str, expected: float) -> None:
    assert similarity(metric, CAT, CAT_REFERENCE) == pytest.approx(expected)


def test_rouge_tokenizer_lowercases_and_drops_non_latin_text() -> None:
    assert similarity("rouge_1", "The CAT!", "the cat") == 1.0
    assert similarity("rouge_1", "日本語", "日本語") == 0.0


def test_pass_threshold_gives_pass_or_fail_and_keeps_the_similarity() -> None:
    samples = [
        Sample(completion="kitten", columns={"reference": "sitting"}),  # 8/13 = 0.615…
        Sample(completion="sitting", columns={"reference": "sitting"}),
    ]
    low, high = reward(evaluation_metric="fuzzy_match", pass_threshold=0.6).score(samples)
    assert (low.value, high.value) == (1.0, 1.0)
    assert low.raw is not None and float(low.raw) == pytest.approx(8 / 13)
    failing = reward(evaluation_metric="fuzzy_match", pass_threshold=0.62).score(samples)
    assert [s.value for s in failing] == [0.0, 1.0]
    assert [s.status for s in failing] == ["ok", "ok"]


def test_threshold_is_inclusive() -> None:
    [score] = reward(evaluation_metric="fuzzy_match", pass_threshold=1.0).score(
        [Sample(completion="same", columns={"reference": "same"})]
    )
    assert score.value == 1.0


def test_fixed_reference_and_reference_column() -> None:
    fixed = reward(evaluation_metric="fuzzy_match", reference="sitting")
    assert [s.value for s in fixed.score([Sample(completion="sitting")])] == [1.0]
    column = reward(evaluation_metric="fuzzy_match", reference_column="answer")
    assert [s.value for s in column.score([Sample(completion="42", columns={"answer": 42})])] == [1.0]


def test_missing_or_bad_reference_does_not_fail_the_batch() -> None:
    scores = reward(evaluation_metric="rouge_l").score(
        [
            Sample(completion="a b", columns={"reference": "a b"}),
            Sample(completion="a b"),
            Sample(completion="a b", columns={"reference": ["a", "b"]}),
        ]
    )
    assert [s.status for s in scores] == ["ok", "unscorable", "error"]
    assert [s.value for s in scores] == [1.0, None, None]
    assert scores[2].error is not None and "'reference'" in scores[2].error


def test_a_metric_failing_on_one_sample_gives_an_error_score(monkeypatch: pytest.MonkeyPatch) -> None:
    def fragile(text: str, reference: str) -> float:
        if text == "boom":
            raise ValueError("cannot tokenize")
        return 0.5

    monkeypatch.setattr(text_similarity, "build_similarity", lambda metric: fragile)
    scores = reward(evaluation_metric="bleu").score(
        [Sample(completion=c, columns={"reference": "x"}) for c in ("ok", "boom", "ok")]
    )
    assert scores[0] == scores[2] == Score.ok(0.5)
    assert scores[1] == Score.failed("bleu: ValueError: cannot tokenize")


def test_scorer_is_built_once_per_reward_and_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def build(metric: str) -> text_similarity.Similarity:
        built.append(metric)
        return lambda text, reference: 1.0

    monkeypatch.setattr(text_similarity, "build_similarity", build)
    rouge = reward(evaluation_metric="rouge_2")
    assert built == []
    batch = [Sample(completion="a", columns={"reference": "a"})] * 3
    rouge.score(batch)
    rouge.score(batch)
    assert built == ["rouge_2"]


@pytest.mark.parametrize(("metric", "why"), [("meteor", "WordNet"), ("cosine", "embedding"), ("chrf", "")])
def test_unsupported_metric_is_rejected_listing_the_supported_ones(metric: str, why: str) -> None:
    with pytest.raises(ValidationError) as info:
        TextSimilarityReward.Options(evaluation_metric=metric)
    [error] = info.value.errors()
    assert error["loc"] == ("evaluation_metric",)
    assert why in error["msg"]
    assert (
        "supported: fuzzy_match, bleu, gleu, rouge_1, rouge_2, rouge_3, rouge_4, rouge_5, rouge_l"
        in error["msg"]
    )


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"evaluation_metric": ["bleu"]}, "evaluation_metric"),
        ({"evaluation_metric": "bleu", "pass_threshold": 1.5}, "pass_threshold"),
        ({"evaluation_metric": "bleu", "pass_threshold": -0.1}, "pass_threshold"),
        ({"evaluation_metric": "bleu", "reference": 42}, "reference"),
        ({"evaluation_metric": "bleu", "metric": "bleu"}, "metric"),
    ],
)
def test_invalid_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        TextSimilarityReward.Options(**options)
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_reference_and_reference_column_are_exclusive() -> None:
    with pytest.raises(ValidationError, match=r"`reference`.*`reference_column`"):
        TextSimilarityReward.Options(evaluation_metric="bleu", reference="x", reference_column="answer")


def test_builtin_default_metric_is_fuzzy_match() -> None:
    assert TextSimilarityReward.Options().evaluation_metric == "fuzzy_match"
