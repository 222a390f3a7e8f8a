"""Step ends as token indices: each step's end found on the token where its text ends, with a byte-level
BPE tokenizer whose tokens need not start on a character."""

from __future__ import annotations

from pathlib import Path

from rewardq.steps import decoder, token_ends
from tests.group_kinds import steps_of
from tests.tinymodels import build_tokenizer

TEXT = "Résumé: first step.\n\n二つ目 the second 🙂 step\n\nthird"


def test_each_step_ends_on_the_token_where_its_text_ends(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(tmp_path / "tok")
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    decode = decoder(tokenizer)
    _, ends = steps_of(TEXT)
    found = token_ends(ends, ids, decode)
    assert found[-1] == len(ids) - 1
    for end, k in zip(ends, found, strict=True):
        assert len(decode(ids[: k + 1])) >= end > len(decode(ids[:k])), (end, k)
    assert found == sorted(found) and len(set(found)) == len(found)


def test_toy_tokens() -> None:
    pieces = ["ab", "c", "\n\n", "de", "f"]
    assert token_ends([3, 8], range(5), lambda ids: "".join(pieces[i] for i in ids)) == [1, 4]
