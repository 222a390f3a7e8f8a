"""The ``soft_overlong`` reward: DAPO's soft length penalty, with ms-swift's values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.soft_overlong import SoftOverlongReward


def reward(**options: int | str) -> SoftOverlongReward:
    return SoftOverlongReward("overlong", SoftOverlongReward.Options(**options))  # type: ignore[arg-type]


def of_length(n: int) -> Sample:
    return Sample(completion="x", columns={"completion_ids": [0] * n})


@pytest.mark.parametrize(
    ("length", "value"),
    [(0, 0.0), (384, 0.0), (385, -1 / 128), (448, -0.5), (512, -1.0), (640, -2.0)],
)
def test_values(length: int, value: float) -> None:
    """0 up to max - cache tokens, -1 at max, and past it no floor (ms-swift's behaviour)."""
    (score,) = reward(soft_cache_length=128).score([of_length(length)])
    assert score.status == "ok"
    assert score.value == value


def test_multi_turn_ids_are_summed() -> None:
    sample = Sample(completion="x", columns={"response_token_ids": [[0] * 400, [0] * 48]})
    assert reward(soft_cache_length=128).score([sample])[0].value == -0.5


def test_tokenizer_counts_when_there_are_no_ids(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    r = reward(soft_max_length=4, soft_cache_length=2, tokenizer=str(tmp_path / "tokenizer.json"))
    scores = r.score([Sample(completion="a b"), Sample(completion="a b c d e")])
    assert [s.value for s in scores] == [0.0, -1.5]


def test_a_sample_without_ids_fails_alone() -> None:
    scores = reward(soft_cache_length=128).score([Sample(completion="no ids"), of_length(448)])
    assert [s.status for s in scores] == ["error", "ok"]
    assert "'tokenizer' option" in (scores[0].error or "")
    assert scores[1].value == -0.5


def test_defaults_and_validation() -> None:
    defaults = SoftOverlongReward.Options()
    assert (defaults.soft_max_length, defaults.soft_cache_length) == (512, 128)
    with pytest.raises(ValidationError, match=r"soft_cache_length \(128\) must be less than soft_max_length"):
        SoftOverlongReward.Options(soft_max_length=100)
    with pytest.raises(ValidationError, match=r"soft_cache_length \(512\) must be less than soft_max_length"):
        SoftOverlongReward.Options(soft_cache_length=512)
    with pytest.raises(ValidationError, match="greater than 0"):
        SoftOverlongReward.Options(soft_cache_length=0)
    with pytest.raises(ValidationError, match="greater than 0"):
        SoftOverlongReward.Options(soft_max_length=-1, soft_cache_length=1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        SoftOverlongReward.Options(soft_cache_length=1, max_length=3)  # type: ignore[call-arg]
