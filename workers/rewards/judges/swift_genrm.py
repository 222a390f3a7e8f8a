"""The ``swift_genrm`` preset of ``local_judge``: the prompt and the reply parsing of ms-swift's
``GenRMPlugin``, so that an ms-swift user gets the same reward from the same judge model.

Written after ``swift/rewards/rm_plugin.py`` of github.com/modelscope/ms-swift at commit
3602360a562313afbf2ef6065fdf61f271a2c5b9 (the file last changed in 4a49a70b83c9f925a40c747739a2003e62d1780d):

- the system message is the plugin's ``textwrap.dedent`` text, leading and trailing newline included;
- the user message is the whole conversation (prompt messages, then the completion as the assistant's)
  as ``Role: content`` lines joined by newlines, roles ``User``/``Assistant``/``System`` (others
  capitalised), messages without content skipped (``messages_to_query``);
- the reward is the number after ``Reward:`` read by the plugin's regex (``extract_reward``).

Where ms-swift gives 0.0 (no reward in the reply), ``local_judge`` says ``error`` and keeps the reply;
the text parts of a multimodal message stand for its content (ms-swift would print the list).
"""

from __future__ import annotations

from rewardq.wire.schema import ChatMessage, Sample, message_text

SYSTEM = (
    "\n"
    "Based on the dialogue history, analyze in detail whether the model's response is accurate, complete, "
    "and relevant.\n"
    "Assign a reward score between 0 and 1, where 0 indicates completely incorrect and 1 indicates fully "
    "correct.\n"
    "Before finishing your response, please assign a reward using the following format:\n"
    "\n"
    "Reward: {reward}\n"
    "\n"
    "For example:\n"
    "Reward: 0.85\n"
)
"""The judge's system message (the ``{reward}`` placeholder is literal text, as in ms-swift)."""

PATTERN = r"Reward:\s*([0-1](?:\.\d+)?)"
"""The reply parser: ms-swift's ``extract_reward`` regex (so ``Reward: 10`` reads as 1, as there)."""

ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


def conversation(sample: Sample) -> list[ChatMessage]:
    """The dialogue ms-swift hands its reward model: the prompt's messages, then the completion's."""
    prompt: list[ChatMessage] = []
    if isinstance(sample.prompt, str):
        prompt = [{"role": "user", "content": sample.prompt}]
    elif sample.prompt is not None:
        prompt = list(sample.prompt)
    if isinstance(sample.completion, str):
        return [*prompt, {"role": "assistant", "content": sample.completion}]
    return [*prompt, *sample.completion]


def query(messages: list[ChatMessage]) -> str:
    """The dialogue as the judge's user message: one ``Role: content`` line per message with content."""
    lines = []
    for message in messages:
        content = message_text(message)
        if not content:
            continue
        role = str(message.get("role", ""))
        lines.append(f"{ROLE_NAMES.get(role.lower(), role.capitalize())}: {content}")
    return "\n".join(lines)
