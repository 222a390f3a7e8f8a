"""The ``reward_model`` kind's forward passes, in process: the pipelined path (each pass's inputs built
in a helper thread while the pass before it runs, one copy of the logits back per call, prompt tokens
counted while the passes run) scores as a plain one-at-a-time transformers forward does."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.models.classifier import Classifier
from tests.workers.rewards.test_reward_model import TOLERANCE, long_tailed_samples, make_reward, plain_logits

MAX_LENGTH = 64


def mixed_samples() -> list[Sample]:
    """A long-tailed mix with multi-byte characters and special tokens near the prompt's end, and
    inputs over MAX_LENGTH: some lose prompt tokens, some are unscorable."""
    samples = long_tailed_samples(48, seed=3)
    samples += [
        Sample(prompt="Été 😀 日本語 <|im_end|>", completion="ok é"),
        Sample(prompt=[{"role": "user", "content": "x" * 3 + "€"}], completion="😀😀 done"),
        Sample(prompt="Please rate the following response. " * 8, completion="The answer is 42."),
        Sample(prompt="Hi", completion="The quick brown fox jumps over the lazy dog. " * 8),
    ]
    return samples


def prompt_tokens_by_offsets(tokenizer: Any, sample: Sample) -> int:
    """The prompt's tokens counted the plain way: every token starting inside the rendered prompt."""
    prompt = [{"role": "user", "content": sample.prompt}] if isinstance(sample.prompt, str) else sample.prompt
    if not prompt:
        return 0
    completion = (
        [{"role": "assistant", "content": sample.completion}]
        if isinstance(sample.completion, str)
        else sample.completion
    )
    text = tokenizer.apply_chat_template([*prompt, *completion], tokenize=False)
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False)
    assert text.startswith(prompt_text)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return sum(1 for start, _ in offsets if start < len(prompt_text))


def test_many_passes_score_as_a_plain_forward_of_each_sample_alone(classifier_right: Path) -> None:
    samples = mixed_samples()
    reward = make_reward(classifier_right, token_budget=160, max_length=MAX_LENGTH)
    tokenizer = reward._ready().tokenizer
    scores = reward.score(samples)
    statuses = {s.status for s in scores}
    assert statuses == {"ok", "unscorable"}
    assert any(s.meta is not None and s.meta.truncated for s in scores)
    for sample, score in zip(samples, scores, strict=True):
        assert score.meta is not None and score.meta.prompt_tokens is not None
        full = prompt_tokens_by_offsets(tokenizer, sample)
        if not score.meta.truncated:
            assert score.meta.prompt_tokens == full
        if score.status == "unscorable":
            continue
        expected = plain_logits(classifier_right, sample, MAX_LENGTH if score.meta.truncated else None)[0]
        assert score.value == pytest.approx(expected, abs=TOLERANCE)


def test_the_next_pass_is_built_while_the_current_one_runs(
    classifier_right: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reward = make_reward(classifier_right, token_budget=320)
    classifier = reward._ready()
    built: list[int] = []
    second_built = threading.Event()
    seen_during_first_pass: list[bool] = []
    inputs = Classifier._inputs

    def recording_inputs(self: Classifier, rows: list[list[int]]) -> Any:
        out = inputs(self, rows)
        built.append(len(rows))
        if len(built) == 2:
            second_built.set()
        return out

    def first_pass_waits(module: Any, args: Any, kwargs: Any) -> None:
        if not seen_during_first_pass:  # bounded: a sequential path would never set the event
            seen_during_first_pass.append(second_built.wait(timeout=60))

    monkeypatch.setattr(Classifier, "_inputs", recording_inputs)
    base = getattr(classifier.model, classifier.model.base_model_prefix)
    hook = base.register_forward_pre_hook(first_pass_waits, with_kwargs=True)
    try:
        scores = reward.score(long_tailed_samples(32, seed=4))
    finally:
        hook.remove()
    assert len(built) > 2
    assert seen_during_first_pass == [True]
    assert all(s.status == "ok" for s in scores)


def test_logits_come_back_in_one_copy_per_call_not_one_per_pass(
    classifier_right: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    reward = make_reward(classifier_right, token_budget=320)
    copies: list[int] = []
    cpu = torch.Tensor.cpu

    def counting_cpu(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        copies.append(self.numel())
        return cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    caplog.set_level("INFO", logger="rewardq.workers.rewards.models.reward_model")
    reward.score(long_tailed_samples(32, seed=4))
    passes = int(caplog.records[-1].getMessage().split(" in ")[1].split()[0])
    assert passes > 2
    assert copies == [32]
