"""Token counts for the length-shaped rewards: token id columns first, else a local tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.tokens import TokenCounter, TokenCountError


def word_tokenizer(path: Path) -> Path:
    """A tokenizer.json that makes one token per word (unknown words included)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(path))
    return path


def ids_sample(**columns: Any) -> Sample:
    return Sample(completion="one two three", columns=columns)


@pytest.mark.parametrize(
    ("columns", "length"),
    [
        ({"completion_ids": [5, 6, 7, 8]}, 4),
        ({"response_token_ids": [5, 6]}, 2),
        ({"completion_ids": [1], "response_token_ids": [1, 2, 3]}, 1),
        ({"completion_ids": []}, 0),
        ({"completion_ids": [[1, 2], [3], []]}, 3),
    ],
)
def test_length_from_token_ids(columns: dict[str, Any], length: int) -> None:
    assert TokenCounter(None).count(ids_sample(**columns)) == length


@pytest.mark.parametrize("ids", ["1 2 3", [1, "2"], [True, False], [1.0], [[1], 2], [[1, "x"]], {"ids": [1]}])
def test_malformed_token_ids(ids: Any) -> None:
    with pytest.raises(TokenCountError, match="completion_ids"):
        TokenCounter(None).count(ids_sample(completion_ids=ids))


def test_no_ids_and_no_tokenizer_says_what_to_do() -> None:
    with pytest.raises(TokenCountError, match=r"'completion_ids'.*'tokenizer' option"):
        TokenCounter(None).count(Sample(completion="text"))


def test_tokenizer_json(tmp_path: Path) -> None:
    counter = TokenCounter(str(word_tokenizer(tmp_path / "tokenizer.json")))
    assert counter.count(Sample(completion="hello big world")) == 3
    assert counter.count(ids_sample(completion_ids=[1])) == 1


def test_tokenizer_folder(tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    fast = Tokenizer.from_file(str(word_tokenizer(tmp_path / "tokenizer.json")))
    PreTrainedTokenizerFast(tokenizer_object=fast, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    assert TokenCounter(str(tmp_path / "tok")).count(Sample(completion="hello big world")) == 3


def test_tokenizer_is_loaded_once_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardq.workers.rewards.rules import tokens

    loads: list[str] = []
    real = tokens.load_encoder

    def load_encoder(path: str) -> tokens.Encoder:
        loads.append(path)
        return real(path)

    monkeypatch.setattr(tokens, "load_encoder", load_encoder)
    counter = TokenCounter(str(word_tokenizer(tmp_path / "tokenizer.json")))
    assert loads == []
    for _ in range(3):
        counter.count(Sample(completion="hello"))
    assert len(loads) == 1


def test_missing_tokenizer_path(tmp_path: Path) -> None:
    with pytest.raises(TokenCountError, match="does not exist"):
        TokenCounter(str(tmp_path / "nope")).count(Sample(completion="text"))


def test_corrupt_tokenizer_file(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenCountError, match="could not load tokenizer"):
        TokenCounter(str(tmp_path / "tokenizer.json")).count(Sample(completion="text"))
