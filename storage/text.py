"""Free text a worker stores (errors, a judge's raw reply, prompt and completion with store_text) made
fit for every audit backend: PostgreSQL refuses NUL characters in text, so they become U+FFFD. The
sample's content hash is computed from the original, so it still identifies the sample."""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def storable_text(text: str | None) -> str | None:
    """``text`` with each NUL character replaced by U+FFFD (None stays None)."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", REPLACEMENT)
