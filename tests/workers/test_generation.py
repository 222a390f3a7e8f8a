"""Tests of batched judge generation: batch planning, left padding, batch invariance, seeded sampling."""

from __future__ import annotations

from typing import Any

import pytest

from rewardq.workers.rewards.models.batching import pack
from rewardq.workers.rewards.models.generation import BatchGenerator, Decoding, sample_seed
from tests.tinyjudges import build_peaky_lm

TEXTS = [
    "Rate this answer",
    "The quick brown fox jumps over the lazy dog, then over the lazy dog again and again.",
    "x",
    "Solve for x: 2x + 3 = 7",
    "yes no good bad correct incorrect",
    "<think>Let me add 2 and 3 to get 5.</think><answer>5</answer>",
]


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> BatchGenerator:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_peaky_lm(tmp_path_factory.getbasetemp() / "peaky-lm")
    return BatchGenerator(
        AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    )


def prompt_ids(generator: BatchGenerator, text: str) -> list[int]:
    tokenizer = generator.tokenizer
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(chat, add_special_tokens=False)["input_ids"])


def test_plan_sorts_by_length_and_respects_batch_size_and_token_budget() -> None:
    """Generation packs as the classifier does (longest first), with rows and new tokens bounded too."""
    lengths = [30, 5, 12, 100, 7, 8]
    assert pack(lengths, None, max_rows=2, extra=10).passes == [[3, 0], [2, 5], [4, 1]]
    # budget 60: rows * (longest prompt + 10); 110 and 40 are alone, 2 * 22 = 44 fits, 3 * 22 = 66 does not.
    assert pack(lengths, 60, max_rows=8, extra=10).passes == [[3], [0], [2, 5], [4, 1]]
    assert pack([], None, max_rows=4, extra=1).passes == []


def test_greedy_reply_is_the_same_alone_in_any_batch_and_as_a_plain_generate(
    generator: BatchGenerator,
) -> None:
    import torch

    prompts = [prompt_ids(generator, t) for t in TEXTS]
    decoding = Decoding(max_new_tokens=12)
    alone = [generator.generate([p], decoding, batch_size=1)[0] for p in prompts]
    assert len({r.text for r in alone}) == len(TEXTS), "replies depend on the prompt"
    for batch_size in (2, 4, 16):
        assert generator.generate(prompts, decoding, batch_size=batch_size) == alone
    mixed = [prompts[2], prompts[1], prompts[2], prompts[5]]
    assert generator.generate(mixed, decoding, batch_size=4) == [alone[2], alone[1], alone[2], alone[5]]
    for prompt, reply in zip(prompts, alone, strict=True):
        plain = generator.model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)
        tokens = plain[0, len(prompt) :].tolist()
        assert (reply.prompt_tokens, reply.completion_tokens) == (len(prompt), 12)
        assert reply.text == generator.tokenizer.decode(tokens, skip_special_tokens=True)
        assert not reply.finished, "cut at max_new_tokens"


def test_sampling_is_reproducible_per_sample_whatever_the_batch(generator: BatchGenerator) -> None:
    prompts = [prompt_ids(generator, t) for t in TEXTS]
    decoding = Decoding(max_new_tokens=12, temperature=1.0, seed=7)
    alone = [generator.generate([p], decoding, batch_size=1)[0].text for p in prompts]
    assert [r.text for r in generator.generate(prompts, decoding, batch_size=16)] == alone
    assert [r.text for r in generator.generate(prompts[::-1], decoding, batch_size=3)] == alone[::-1]
    reseeded = [r.text for r in generator.generate(prompts, Decoding(12, temperature=1.0, seed=8), 16)]
    greedy = [r.text for r in generator.generate(prompts, Decoding(12), 16)]
    assert reseeded != alone and greedy != alone


@pytest.mark.parametrize("narrow", [{"top_k": 1}, {"top_p": 1e-6}])
def test_sampling_narrowed_to_one_token_is_greedy(generator: BatchGenerator, narrow: dict[str, Any]) -> None:
    prompts = [prompt_ids(generator, t) for t in TEXTS]
    greedy = generator.generate(prompts, Decoding(max_new_tokens=8), batch_size=16)
    assert generator.generate(prompts, Decoding(8, temperature=5.0, **narrow), batch_size=16) == greedy


def test_sample_seed_depends_on_seed_and_prompt_only() -> None:
    assert sample_seed(0, [1, 2, 3]) == sample_seed(0, [1, 2, 3])
    assert len({sample_seed(0, [1, 2, 3]), sample_seed(1, [1, 2, 3]), sample_seed(0, [1, 2, 4])}) == 3
    assert 0 <= sample_seed(5, [9]) < 2**63


def test_a_model_without_an_end_of_sequence_token_is_refused() -> None:
    class Nothing:
        eos_token_id = None
        pad_token_id = None
        generation_config = None

    with pytest.raises(ValueError, match="no end-of-sequence token"):
        BatchGenerator(Nothing(), Nothing())
