"""Reading a judge's chat completion: the verdict of each choice, or why there is none.

Only the judge's reply is read, never the graded text. Free text is read from its answer part (after the
last ``</think>``) by the kind's patterns (:mod:`rewardq.workers.rewards.judges.verdicts`); verdict-shaped
matches that disagree are ``ambiguous``. A structured reply (choice / regex) is the verdict as a whole, a
JSON reply holds it in one field. Three verdicts are read here: ``judge``'s grade (:class:`ReplyReader`;
with labels the verdict is a label and scores 1.0 when it passes), ``pairwise_judge``'s preference
(:class:`PreferenceReader`: ``A``, ``B`` or ``tie``) and ``group_judge``'s grades, one per completion
shown (:class:`GradesReader`).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import orjson

from rewardq.workers.rewards.judges.cache import Value
from rewardq.workers.rewards.judges.options import JudgeOptions, StructuredOutput
from rewardq.workers.rewards.judges.results import Reading
from rewardq.workers.rewards.judges.verdicts import (
    NUMBER,
    compile_patterns,
    normalised,
    parse_verdict,
    verdict_matches,
)

PREFERENCES = {"a": 1.0, "b": 0.0, "tie": 0.5}
"""A preference verdict (case aside) and its value: how often the completion shown first won."""
PREFERENCE_PATTERNS = (r"\[\[\s*([^\[\]]*?)\s*\]\]",)  # [[A]], [[B]], [[tie]]
GRADES_PATTERNS = (r"\[\[([^\[\]]*)\]\]",)  # [[7, 3, 9]]
_GRADE = re.compile(rf"^\s*({NUMBER})\s*$")


class ChatReader(ABC):
    """Reads a chat completion's choices, each through :meth:`verdict`; a reply must give one in each."""

    def __init__(self, parser: str | None, structured: StructuredOutput | None) -> None:
        self.parser = parser
        self.structured = structured

    @abstractmethod
    def verdict(self, text: str, completions: int = 1) -> tuple[Value | None, str | None]:
        """One reply's value, or ``(None, "reason: detail")``; ``completions``: how many were shown."""

    def combine(self, values: Sequence[Value]) -> Value:
        """The value of a request from its replies' (one reply unless a kind asks for more)."""
        [value] = values
        return value

    def read(self, body: Any, completions: int = 1) -> Reading:
        """Read a ``chat.completion`` body; every choice must give a verdict."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            return Reading(None, "invalid_response: no choices in the reply", _dump(body))
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        texts: list[str] = []
        values: list[Value] = []
        error: str | None = None
        truncated = False
        for choice in choices:
            text, finish, refusal = _choice(choice)
            texts.append(text)
            truncated = truncated or finish == "length"
            if refusal or finish == "content_filter":
                error = error or f"refused: {refusal or 'the server filtered the reply'}"
                continue
            value, problem = (
                (None, "parse_error: empty reply") if not text.strip() else self.verdict(text, completions)
            )
            if problem is not None:
                if finish == "length":
                    problem += " (the reply was cut at max_tokens)"
                error = error or problem
            elif value is not None:
                values.append(value)
        raw = texts[0] if len(texts) == 1 else orjson.dumps(texts).decode()
        tokens = (_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
        if error is not None:
            return Reading(None, error, raw, *tokens, truncated)
        return Reading(self.combine(values), None, raw, *tokens, truncated)

    def structured_answer(self, text: str) -> tuple[Any, str | None]:
        """A structured reply's verdict: the whole reply (stripped), or a JSON reply's ``field``."""
        assert self.structured is not None
        if self.structured.json_schema is None:
            return text.strip(), None
        try:
            return orjson.loads(text)[self.structured.field], None
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            return None, f"parse_error: not a JSON object with a {self.structured.field!r} field"

    def free_text(self, text: str, defaults: tuple[str, ...]) -> tuple[str | None, str | None]:
        """The one verdict the reply's free text holds (``parser``, else ``defaults``), or why not."""
        found = verdict_matches(text, compile_patterns(self.parser, defaults))
        if not found:
            return None, "parse_error: no verdict in the reply"
        if len({f.strip().lower() for f in found}) > 1:
            shown = ", ".join(f[:40] for f in found[:8])
            return None, f"ambiguous: the reply holds different verdicts ({shown})"
        return found[0], None


class ReplyReader(ChatReader):
    """Reads ``judge``'s grades the way its options say."""

    def __init__(self, options: JudgeOptions) -> None:
        super().__init__(options.parser, options.structured_output())
        self.labels = options.labels
        self.passing = set(options.passing_labels or ())
        self.score_range = options.score_range

    def combine(self, values: Sequence[Value]) -> Value:
        """The mean of the replies' values (self-consistency, ``n`` > 1)."""
        floats = [v for v in values if not isinstance(v, tuple)]
        return sum(floats) / len(floats)

    def verdict(self, text: str, completions: int = 1) -> tuple[float | None, str | None]:
        """One reply's value in [0, 1], or ``(None, "reason: detail")``."""
        if self.parser is not None or self.structured is None:
            found = parse_verdict(text, self.parser, self.score_range)
            return found.value, found.error
        answer, problem = self.structured_answer(text)
        if problem is not None:
            return None, problem
        if self.labels is not None:
            if not isinstance(answer, str) or answer not in self.labels:
                return None, f"parse_error: {str(answer)[:80]!r} is not one of the labels"
            return (1.0 if answer in self.passing else 0.0), None
        try:
            value = float(answer)
        except (TypeError, ValueError):
            return None, f"parse_error: {str(answer)[:80]!r} is not a number"
        return _scaled(value, self.score_range)


class PreferenceReader(ChatReader):
    """Reads ``pairwise_judge``'s verdict, strictly: ``A``, ``B`` or ``tie`` (case aside) and nothing else;
    its value is 1.0, 0.0 or 0.5 (:data:`PREFERENCES`)."""

    def verdict(self, text: str, completions: int = 1) -> tuple[float | None, str | None]:
        if self.parser is not None or self.structured is None:
            answer, problem = self.free_text(text, PREFERENCE_PATTERNS)
        else:
            answer, problem = self.structured_answer(text)
        if problem is not None:
            return None, problem
        value = PREFERENCES.get(answer.strip().lower()) if isinstance(answer, str) else None
        if value is None:
            return None, f"parse_error: {str(answer)[:80]!r} is not A, B or tie"
        return value, None


class GradesReader(ChatReader):
    """Reads ``group_judge``'s grades: exactly one per completion shown, each on ``score_range``, as
    ``[[g1, g2, ...]]`` in free text, a list in a JSON reply's field, or the whole structured reply."""

    def __init__(
        self, parser: str | None, structured: StructuredOutput | None, score_range: tuple[float, float] | None
    ) -> None:
        super().__init__(parser, structured)
        self.score_range = score_range

    def verdict(self, text: str, completions: int = 1) -> tuple[tuple[float, ...] | None, str | None]:
        answer: Any
        if self.parser is not None or self.structured is None:
            answer, problem = self.free_text(text, GRADES_PATTERNS)
        else:
            answer, problem = self.structured_answer(text)
        if problem is not None:
            return None, problem
        if isinstance(answer, str):
            items: list[Any] = answer.strip().removeprefix("[").removesuffix("]").split(",")
            grades = [float(m.group(1)) if (m := _GRADE.match(item)) else None for item in items]
        elif isinstance(answer, list):
            grades = [
                float(a) if isinstance(a, int | float) and not isinstance(a, bool) else None for a in answer
            ]
        else:
            return None, f"parse_error: {str(answer)[:80]!r} is not a list of grades"
        if any(g is None for g in grades):
            return None, f"parse_error: {str(answer)[:80]!r} is not a list of numbers"
        if len(grades) != completions:
            return None, f"parse_error: {len(grades)} grades for {completions} responses"
        values = []
        for grade in grades:
            assert grade is not None
            value, problem = _scaled(grade, self.score_range)
            if value is None:
                return None, problem
            values.append(value)
        return tuple(values), None


def _scaled(value: float, score_range: tuple[float, float] | None) -> tuple[float | None, str | None]:
    if not math.isfinite(value):
        return None, f"parse_error: the verdict {value} is not finite"
    found = normalised(value, score_range)
    return found.value, found.error


def _choice(choice: Any) -> tuple[str, str | None, str | None]:
    """A choice's text, finish reason and refusal (each empty when the reply lacks it)."""
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    text, refusal, finish = message.get("content"), message.get("refusal"), choice.get("finish_reason")
    return (
        text if isinstance(text, str) else "",
        finish if isinstance(finish, str) else None,
        refusal if isinstance(refusal, str) and refusal else None,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _dump(body: Any) -> str:
    try:
        return orjson.dumps(body).decode()[:2000]
    except TypeError:
        return repr(body)[:2000]
