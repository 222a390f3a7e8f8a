"""The ``format`` reward: ms-swift's think/answer pattern, or a configured one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.format import SWIFT_PATTERN, FormatReward


def values(completions: list[str], **options: str) -> list[float | None]:
    reward = FormatReward("format", FormatReward.Options(**options))
    return [s.value for s in reward.score([Sample(completion=c) for c in completions])]


@pytest.mark.parametrize(
    ("completion", "value"),
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>\nlines\n</think>\n\n<answer>\n42\n</answer>", 1.0),
        ("<think>a</think><answer>b</answer>\n", 0.0),  # ms-swift: nothing may follow </answer>
        (" <think>a</think><answer>b</answer>", 0.0),
        ("<think>a</think>text<answer>b</answer>", 0.0),
        ("<think>a</think><answer>b</answer><answer>c</answer>", 1.0),  # the lazy .*? stretches to the end
        ("<answer>b</answer>", 0.0),
        ("", 0.0),
    ],
)
def test_ms_swift_pattern(completion: str, value: float) -> None:
    assert values([completion]) == [value]


def test_chat_completion() -> None:
    reward = FormatReward("format", FormatReward.Options())
    sample = Sample(completion=[{"role": "assistant", "content": "<think>a</think><answer>b</answer>"}])
    assert reward.score([sample])[0].value == 1.0


def test_custom_pattern_is_matched_from_the_start_with_dotall() -> None:
    assert values(["Answer:\n42", "so Answer: 42", "Answer: x"], pattern=r"Answer:.*\d") == [1.0, 0.0, 0.0]


def test_dollar_matches_at_any_line_end_under_multiline() -> None:
    text = ["Answer: 42\nand more"]
    assert values(text, pattern=r"Answer: \d+$") == [1.0]
    assert values(text, pattern=r"Answer: \d+\Z") == [0.0]


def test_options() -> None:
    assert FormatReward.Options().pattern == SWIFT_PATTERN
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        FormatReward.Options(pattern="(unclosed")
    with pytest.raises(ValidationError, match="Extra inputs"):
        FormatReward.Options(flags="i")  # type: ignore[call-arg]


def test_the_linear_scan_agrees_with_the_regex_on_random_completions() -> None:
    import random
    import re

    from rewardq.workers.rewards.rules.format import FLAGS, swift_format

    regex = re.compile(SWIFT_PATTERN, FLAGS)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x", "<", "/", ">", "think"]
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        assert swift_format(text) == bool(regex.match(text)), text


def test_a_hostile_completion_at_the_record_limit_is_scored() -> None:
    hostile = "<think>" + "</think>\n<answer>" * 60_000  # ~1 MB: minutes for the backtracking regex
    assert values([hostile, hostile + "</answer>"]) == [0.0, 1.0]
