"""The program in a completion: the last fenced code block in the reward's language, or the whole completion.

A block opens with a line of three or more backticks whose first word (the tag) names its language, and
closes with a line of at least as many backticks and nothing else; a block left open runs to the end (a
completion cut at its length limit). The last block tagged with one of the language's names wins; when no
block is tagged so, the last untagged block; when the completion has no block at all, the whole completion
(a completion that is only code). Blocks in other languages only: no program.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["python", "cpp"]

TAGS: dict[Language, frozenset[str]] = {
    "python": frozenset({"python", "python3", "py"}),
    "cpp": frozenset({"cpp", "c++", "cc", "cxx"}),
}


def blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (lowercased tag, body), in order; one pass over the lines."""
    found: list[tuple[str, str]] = []
    fence = 0
    tag = ""
    body: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if not fence:
            if stripped.startswith("```"):
                fence = len(stripped) - len(stripped.lstrip("`"))
                words = stripped[fence:].split()
                tag, body = (words[0].lower() if words else ""), []
        elif len(stripped) >= fence and stripped == "`" * len(stripped):
            found.append((tag, "\n".join(body)))
            fence = 0
        else:
            body.append(line)
    if fence:
        found.append((tag, "\n".join(body)))
    return found


def extract_program(completion: str, language: Language) -> str | None:
    """The program to run, or None when there is none (an empty completion or block, or blocks in other
    languages only)."""
    found = blocks(completion)
    tagged = [body for tag, body in found if tag in TAGS[language]]
    untagged = [body for tag, body in found if not tag]
    program = (tagged or untagged)[-1] if tagged or untagged else ("" if found else completion)
    return program if program.strip() else None
