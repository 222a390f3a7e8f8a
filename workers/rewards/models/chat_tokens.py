"""Samples rendered with a model's chat template and tokenized within a maximum length.

A sample's prompt and completion become chat messages (a string prompt is one user turn, a string
completion one assistant turn; chat-message lists are used as they are) and are rendered with the
scoring model's own chat template, as TRL and verl render a reward model's input. Too long an input
is either cut from the left, dropping prompt tokens only, or reported as unscorable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rewardq.wire.schema import ChatMessage, Sample

Truncation = Literal["left", "unscorable"]


@dataclass(frozen=True)
class Encoded:
    """One sample's token ids, or why it cannot be scored (``ids`` is None then)."""

    ids: list[int] | None
    prompt_tokens: int
    completion_tokens: int
    truncated: bool = False
    problem: str | None = None


def messages(sample: Sample) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The sample's prompt and completion as chat messages (copies: the sample's own are not handed out)."""
    if sample.prompt is None:
        prompt: list[ChatMessage] = []
    elif isinstance(sample.prompt, str):
        prompt = [{"role": "user", "content": sample.prompt}]
    else:
        prompt = [m.copy() for m in sample.prompt]
    if isinstance(sample.completion, str):
        completion: list[ChatMessage] = [{"role": "assistant", "content": sample.completion}]
    else:
        completion = [m.copy() for m in sample.completion]
    return prompt, completion


def render(tokenizer: Any, sample: Sample) -> tuple[str, int]:
    """The rendered text of a sample and how many of its leading characters are the prompt's."""
    prompt, completion = messages(sample)
    text = str(tokenizer.apply_chat_template(prompt + completion, tokenize=False))
    if not prompt:
        return text, 0
    prompt_text = str(tokenizer.apply_chat_template(prompt, tokenize=False))
    shared = next((i for i, (a, b) in enumerate(zip(text, prompt_text, strict=False)) if a != b), None)
    return text, min(len(text), len(prompt_text)) if shared is None else shared


def encode(
    tokenizer: Any, samples: Sequence[Sample], max_length: int | None, truncation: Truncation
) -> list[Encoded]:
    """Render and tokenize ``samples``; inputs over ``max_length`` are cut or unscorable."""
    rendered = [render(tokenizer, s) for s in samples]
    texts = [text for text, _ in rendered]
    if getattr(tokenizer, "is_fast", False):
        batch = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        ids_list = batch["input_ids"]
        prompt_counts = [
            sum(1 for start, _ in offsets if start < chars)
            for offsets, (_, chars) in zip(batch["offset_mapping"], rendered, strict=True)
        ]
    else:
        ids_list = tokenizer(texts, add_special_tokens=False)["input_ids"]
        prompt_counts = [
            len(tokenizer(text[:chars], add_special_tokens=False)["input_ids"]) if chars else 0
            for text, chars in rendered
        ]
    return [
        _fit(list(ids), count, max_length, truncation)
        for ids, count in zip(ids_list, prompt_counts, strict=True)
    ]


def _fit(ids: list[int], prompt_tokens: int, max_length: int | None, truncation: Truncation) -> Encoded:
    completion_tokens = len(ids) - prompt_tokens
    if max_length is None or len(ids) <= max_length:
        return Encoded(ids, prompt_tokens, completion_tokens)
    if truncation == "unscorable":
        return Encoded(
            None,
            prompt_tokens,
            completion_tokens,
            problem=f"input is {len(ids)} tokens, over max_length {max_length} (truncation = 'unscorable')",
        )
    excess = len(ids) - max_length
    if excess > prompt_tokens:
        return Encoded(
            None,
            prompt_tokens,
            completion_tokens,
            problem=(
                f"the completion alone is {completion_tokens} tokens with the chat template, "
                f"over max_length {max_length}; only prompt tokens are dropped"
            ),
        )
    return Encoded(ids[excess:], prompt_tokens - excess, completion_tokens, truncated=True)
