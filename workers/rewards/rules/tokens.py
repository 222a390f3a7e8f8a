"""Completion lengths in tokens, for the length-shaped rewards (``cosine``, ``soft_overlong``).

As in ms-swift, a completion's length is the number of token ids the trainer generated, read from
``columns["completion_ids"]`` or else ``columns["response_token_ids"]``: a list of ints, or a list of
lists of ints for a multi-turn completion, whose lengths are summed. A sample without ids is counted
with the reward's configured tokenizer (the completion text, no special tokens added); the tokenizer
is loaded on first use, once per :class:`TokenCounter`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardq.wire.schema import Sample

TOKEN_ID_COLUMNS = ("completion_ids", "response_token_ids")

Encoder = Callable[[str], int]


class TokenCountError(ValueError):
    """Raised when a sample's length cannot be had: malformed token ids, or no ids and no tokenizer."""


class TokenCounter:
    """Counts the tokens of a sample's completion: its token ids if it has them, else the tokenizer."""

    def __init__(self, tokenizer: str | None) -> None:
        self.tokenizer = tokenizer
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    def count(self, sample: Sample) -> int:
        """The completion's length in tokens; raises :class:`TokenCountError` when it cannot be had."""
        for column in TOKEN_ID_COLUMNS:
            ids = sample.columns.get(column)
            if ids is not None:
                return ids_length(column, ids)
        if self.tokenizer is None:
            raise TokenCountError(
                f"no token ids: pass the completion's token ids in column {TOKEN_ID_COLUMNS[0]!r} "
                f"(or {TOKEN_ID_COLUMNS[1]!r}), or configure the reward's 'tokenizer' option"
            )
        return self._load(self.tokenizer)(sample.completion_text)

    def _load(self, path: str) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = load_encoder(path)
            return self._encoder


def ids_length(column: str, ids: Any) -> int:
    """ms-swift's length of token ids: ``len(ids)``, or the summed lengths of a list of lists."""
    if not isinstance(ids, list):
        raise TokenCountError(f"column {column!r} must be a list of token ids, got {type(ids).__name__}")
    if ids and isinstance(ids[0], list):
        if not all(isinstance(turn, list) and all(_is_id(i) for i in turn) for turn in ids):
            raise TokenCountError(f"column {column!r} must be a list of ints or a list of lists of ints")
        return sum(map(len, ids))
    if not all(_is_id(i) for i in ids):
        raise TokenCountError(f"column {column!r} must be a list of ints or a list of lists of ints")
    return len(ids)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_encoder(path: str) -> Encoder:
    """A token counter for a local tokenizer: a ``tokenizer.json`` file or a ``from_pretrained`` folder."""
    location = Path(path)
    if not location.exists():
        raise TokenCountError(f"tokenizer {path!r} does not exist: give a local tokenizer.json or folder")
    try:
        if location.is_file():
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(path)
            return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(path)
        return lambda text: len(hf.encode(text, add_special_tokens=False))
    except Exception as e:  # any loader failure is reported per sample
        raise TokenCountError(f"could not load tokenizer {path!r}: {type(e).__name__}: {e}") from e
