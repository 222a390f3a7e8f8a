"""Reading a judge's chat completion: the verdict of each choice, or why there is none.

Only the judge's reply is read, never the graded text. Free text goes through
:func:`rewardq.workers.rewards.judges.verdicts.parse_verdict` (read from the end; several
verdict-shaped matches of
different values are ``ambiguous``). A structured reply (choice / regex) is the verdict as a whole, a
JSON reply holds it in one field; with labels the verdict is a label and scores 1.0 when it passes.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from rewardq.workers.rewards.judges.options import JudgeOptions, StructuredOutput
from rewardq.workers.rewards.judges.results import Reading
from rewardq.workers.rewards.judges.verdicts import normalised, parse_verdict


class ReplyReader:
    """Reads chat completions the way a judge's options say."""

    def __init__(self, options: JudgeOptions) -> None:
        self.parser = options.parser
        self.structured: StructuredOutput | None = options.structured_output()
        self.labels = options.labels
        self.passing = set(options.passing_labels or ())
        self.score_range = options.score_range

    def read(self, body: Any) -> Reading:
        """Read a ``chat.completion`` body; every choice must give a verdict."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            return Reading(None, "invalid_response: no choices in the reply", _dump(body))
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        texts: list[str] = []
        values: list[float] = []
        error: str | None = None
        truncated = False
        for choice in choices:
            text, finish, refusal = _choice(choice)
            texts.append(text)
            truncated = truncated or finish == "length"
            if refusal or finish == "content_filter":
                error = error or f"refused: {refusal or 'the server filtered the reply'}"
                continue
            value, problem = self.verdict(text)
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
        return Reading(sum(values) / len(values), None, raw, *tokens, truncated)

    def verdict(self, text: str) -> tuple[float | None, str | None]:
        """One reply's value in [0, 1], or ``(None, "reason: detail")``."""
        if not text.strip():
            return None, "parse_error: empty reply"
        if self.parser is not None or self.structured is None:
            found = parse_verdict(text, self.parser, self.score_range)
            return found.value, found.error
        answer: Any = text.strip()
        if self.structured.json_schema is not None:
            try:
                answer = orjson.loads(text)[self.structured.field]
            except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
                return None, f"parse_error: not a JSON object with a {self.structured.field!r} field"
        if self.labels is not None:
            if not isinstance(answer, str) or answer not in self.labels:
                return None, f"parse_error: {str(answer)[:80]!r} is not one of the labels"
            return (1.0 if answer in self.passing else 0.0), None
        try:
            value = float(answer)
        except (TypeError, ValueError):
            return None, f"parse_error: {str(answer)[:80]!r} is not a number"
        return self._scale(value)

    def _scale(self, value: float) -> tuple[float | None, str | None]:
        if not math.isfinite(value):
            return None, f"parse_error: the verdict {value} is not finite"
        found = normalised(value, self.score_range)
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
