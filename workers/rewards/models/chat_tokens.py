"""Samples rendered with a model's chat template and tokenized within a maximum length.

A sample's prompt and completion become chat messages (a string prompt is one user turn, a string
completion one assistant turn; chat-message lists are used as they are) and are rendered with the
scoring model's own chat template, as TRL and verl render a reward model's input. Too long an input
is either cut from the left, dropping prompt tokens only, or reported as unscorable.

:func:`tokenize` does what packing needs (render each sample, one batched tokenizer call); how many
of a sample's tokens are its prompt's is asked later, per sample (:meth:`Tokenized.fit`), so that a
scorer can count them while its forward passes run. Only an input over ``max_length`` needs the count
before packing (which prompt tokens to drop). :func:`encode` does both at once.
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
    return text, _prompt_chars(tokenizer, text, prompt)


def _prompt_chars(tokenizer: Any, text: str, prompt: list[ChatMessage]) -> int:
    """How many leading characters of the rendered ``text`` the prompt rendered alone shares with it."""
    if not prompt:
        return 0
    prompt_text = str(tokenizer.apply_chat_template(prompt, tokenize=False))
    if text.startswith(prompt_text):  # the usual case, compared in C
        return len(prompt_text)
    shared = next((i for i, (a, b) in enumerate(zip(text, prompt_text, strict=False)) if a != b), None)
    return min(len(text), len(prompt_text)) if shared is None else shared


@dataclass
class Tokenized:
    """Rendered samples and their token ids; :meth:`fit` gives each one's :class:`Encoded`."""

    tokenizer: Any
    texts: list[str]
    prompts: list[list[ChatMessage]]
    ids: list[list[int]]
    encodings: list[Any] | None  # a fast tokenizer's encodings (their offsets live in Rust), else None

    def fit(self, i: int, max_length: int | None, truncation: Truncation) -> Encoded:
        """Sample ``i`` within ``max_length``: cut from the left or unscorable when it is over."""
        return _fit(list(self.ids[i]), self.prompt_tokens(i), max_length, truncation)

    def prompt_tokens(self, i: int) -> int:
        """How many of sample ``i``'s tokens start inside its rendered prompt."""
        chars = _prompt_chars(self.tokenizer, self.texts[i], self.prompts[i])
        if not chars:
            return 0
        if self.encodings is None:
            text = self.texts[i][:chars]
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return _tokens_starting_before(self.encodings[i], chars)


def tokenize(tokenizer: Any, samples: Sequence[Sample]) -> Tokenized:
    """Render ``samples`` with the chat template and tokenize them in one batched call."""
    return tokenize_conversations(tokenizer, [messages(sample) for sample in samples])


def tokenize_conversations(
    tokenizer: Any, conversations: Sequence[tuple[list[ChatMessage], list[ChatMessage]]]
) -> Tokenized:
    """Render (prompt, completion) message lists with the chat template and tokenize them in one call."""
    texts: list[str] = []
    prompts: list[list[ChatMessage]] = []
    for prompt, completion in conversations:
        texts.append(str(tokenizer.apply_chat_template(prompt + completion, tokenize=False)))
        prompts.append(prompt)
    if not texts:
        return Tokenized(tokenizer, [], [], [], None)
    batch = tokenizer(texts, add_special_tokens=False)
    encodings = batch.encodings if getattr(tokenizer, "is_fast", False) else None
    return Tokenized(tokenizer, texts, prompts, batch["input_ids"], encodings)


def encode(
    tokenizer: Any, samples: Sequence[Sample], max_length: int | None, truncation: Truncation
) -> list[Encoded]:
    """Render and tokenize ``samples``; inputs over ``max_length`` are cut or unscorable."""
    tokens = tokenize(tokenizer, samples)
    return [tokens.fit(i, max_length, truncation) for i in range(len(tokens.ids))]


def _tokens_starting_before(encoding: Any, chars: int) -> int:
    """How many tokens of ``encoding`` start before character ``chars`` of its text.

    Offsets grow along the text, so that is the index of the first token starting at ``chars`` or
    after: the token holding that character, or the one after it when it started earlier. Its
    neighbours' offsets are checked (a few lookups in Rust); failing that, every token's is counted.
    """
    size = len(encoding)

    def start(token: int) -> int | None:
        span = encoding.token_to_chars(token)
        return None if span is None else int(span[0])

    token = encoding.char_to_token(chars)
    first = None if token is None else start(token)
    if token is not None and first is not None:
        count = token + (first < chars)
        previous = start(count - 1) if count > 0 else -1
        following = start(count) if count < size else chars
        if previous is not None and following is not None and previous < chars <= following:
            return int(count)
    return sum(1 for begin, _ in encoding.offsets if begin < chars)


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
