"""Placing step scores on tokens: where each step of a completion ends, as a token index.

A score's step ends (``ScoreResult.step_ends``) are character offsets in the completion text, the one
measure every reward kind shares. A trainer that places step rewards on tokens (verl's token-level
reward tensor) needs token indices in its own tokenizer's ids of the completion: :func:`token_ends` maps
one to the other with the tokenizer's ``decode``, so that it holds for any tokenizer, byte-level BPE
included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Decode = Callable[[list[int]], str]


def token_ends(char_ends: Sequence[int], token_ids: Sequence[int], decode: Decode) -> list[int]:
    """For each step ending at character ``end`` of the completion text, the index of the first token
    whose prefix of ``token_ids`` decodes to at least ``end`` characters: the token on which the step
    ends (the last token where the text runs out first). ``decode`` is the tokenizer's
    (``tokenizer.decode``), the ids the completion's own (``completion_ids``)."""
    ids = list(token_ids)
    lengths: dict[int, int] = {}

    def decoded(k: int) -> int:  # characters that ids[: k + 1] decode to
        if k not in lengths:
            lengths[k] = len(decode(ids[: k + 1]))
        return lengths[k]

    out = []
    for end in char_ends:
        low, high = 0, len(ids) - 1
        while low < high:
            middle = (low + high) // 2
            if decoded(middle) >= end:
                high = middle
            else:
                low = middle + 1
        out.append(max(low, 0))
    return out


def decoder(tokenizer: Any) -> Decode:
    """A transformers tokenizer's decode as the text its ids stand for (special tokens left out, as
    verl decodes a response for its reward function)."""
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
