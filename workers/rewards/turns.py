"""Calling a reward on a chunk, turn by turn when its options say ``per_turn = true``.

Every place a worker calls :meth:`Reward.score` goes through :func:`score_samples` (a killable child, the
watchdog's thread). With ``per_turn`` each assistant turn of a sample's conversation is scored as a sample
of its own, all turns of a chunk in one call of the reward (so chunking and coalescing change no value),
and the sample's value is ``turn_aggregate`` over them; its :attr:`Score.steps` are the turn scores.

The conversation is the sample's prompt (chat messages; a string prompt is one user message) then its
completion (chat messages, or a string: one assistant message). Every assistant message of it is a turn,
those in the prompt too: an ms-swift row's ``messages`` put all but the last turn there. Turn k is scored
as the sample whose prompt is the conversation before its message and whose completion is that message,
in the completion's own form (``[message]`` for a list of messages, its text for a string); the first
message of the completion keeps the sample's prompt as it is, and a turn that is the whole completion is
the sample itself. A turn keeps the sample's columns, but not the token ids of the whole completion
(:data:`~.rules.tokens.TOKEN_ID_COLUMNS`) unless it is that whole completion.

The sample's status: the turns that the aggregate reads are the last for ``last``, every turn otherwise.
If one of them is ``error`` or ``timeout``, so is the sample (its error names the turn, the first such);
``unscorable`` turns are left out of the aggregate, and a sample with none left is ``unscorable``. A turn
that is not ``ok`` is None in the steps; a sample without an assistant message is ``unscorable``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from rewardq.wire.schema import ChatMessage, Sample, message_text
from rewardq.workers.rewards.base import Reward, Score, ScoreMeta, TurnAggregate
from rewardq.workers.rewards.rules.tokens import TOKEN_ID_COLUMNS

NO_TURN = "per_turn: the conversation has no assistant message to score"
NO_TURN_SCORE = Score.unscorable(NO_TURN)

AGGREGATES: dict[TurnAggregate, Callable[[list[float]], float]] = {
    "last": lambda values: values[-1],
    "min": min,
    "mean": lambda values: math.fsum(values) / len(values),
    "max": max,
    "prod": math.prod,
}


def score_samples(reward: Reward, samples: Sequence[Sample]) -> list[Score]:
    """The reward's scores of ``samples``, in order: one call of ``reward.score``, on the samples' turns
    when the reward scores per turn."""
    if not reward.options.per_turn:
        return reward.score(samples)
    expanded = [turns_of(sample) for sample in samples]
    flat = [turn for turns in expanded for turn in turns]
    scores = reward.score(flat) if flat else []
    if len(scores) != len(flat):
        raise RuntimeError(f"returned {len(scores)} scores for {len(flat)} turns")
    out, start = [], 0
    for turns in expanded:
        end = start + len(turns)
        out.append(aggregate(scores[start:end], reward.options.turn_aggregate) if turns else NO_TURN_SCORE)
        start = end
    return out


def turns_of(sample: Sample) -> list[Sample]:
    """The samples that score each assistant turn of ``sample``'s conversation, in order."""
    prompt, completion = sample.prompt, sample.completion
    history: list[ChatMessage]
    if prompt is None:
        history = []
    elif isinstance(prompt, str):
        history = [{"role": "user", "content": prompt}]
    else:
        history = list(prompt)
    replies: list[ChatMessage] = (
        [{"role": "assistant", "content": completion}] if isinstance(completion, str) else completion
    )
    conversation, first = history + replies, len(history)
    turn_columns = {k: v for k, v in sample.columns.items() if k not in TOKEN_ID_COLUMNS}
    turns = []
    for at, message in enumerate(conversation):
        if message.get("role") != "assistant":
            continue
        if at == first and len(replies) == 1:
            turns.append(sample)
            continue
        turns.append(
            Sample.model_construct(
                prompt=prompt if at == first else conversation[:at] or None,
                completion=message_text(message) if isinstance(completion, str) else [message],
                columns=turn_columns,
                group=sample.group,
            )
        )
    return turns


def aggregate(turns: Sequence[Score], how: TurnAggregate) -> Score:
    """One sample's score from its turns' scores (see the module's docstring for the statuses)."""
    steps = tuple(turn.value if turn.status == "ok" else None for turn in turns)
    raw = (
        orjson.dumps([turn.raw for turn in turns]).decode() if any(t.raw is not None for t in turns) else None
    )
    meta = merged_meta([turn.meta for turn in turns])
    count, numbered = len(turns), list(enumerate(turns, 1))
    read = numbered[-1:] if how == "last" else numbered
    failed = [(k, turn) for k, turn in read if turn.status in ("error", "timeout")]
    if failed:
        k, turn = failed[0]
        return Score(None, turn.status, f"turn {k} of {count}: {turn.error}", raw, meta, steps)
    values = [turn.value for _, turn in read if turn.status == "ok" and turn.value is not None]
    if not values:
        k, turn = read[-1]
        return Score(None, "unscorable", f"turn {k} of {count}: {turn.error}", raw, meta, steps)
    return Score.ok(AGGREGATES[how](values), raw, meta, steps=steps)


def merged_meta(metas: Sequence[ScoreMeta | None]) -> ScoreMeta | None:
    """What the turns' scorers reported, as one sample's audit columns: counts summed, ``truncated`` if any
    turn was, ``cache_hit`` if every turn was, the replica that answered the last turn asked."""
    present = [meta for meta in metas if meta is not None]
    if not present:
        return None

    def given(field: str) -> list[Any]:
        return [value for meta in present if (value := getattr(meta, field)) is not None]

    def total(field: str) -> int | None:
        values = given(field)
        return sum(values) if values else None

    truncated, cache_hit, replicas, templates = (
        given(f) for f in ("truncated", "cache_hit", "replica", "template_hash")
    )
    return ScoreMeta(
        truncated=any(truncated) if truncated else None,
        cache_hit=all(cache_hit) if cache_hit else None,
        http_attempts=total("http_attempts"),
        replica=replicas[-1] if replicas else None,
        prompt_tokens=total("prompt_tokens"),
        completion_tokens=total("completion_tokens"),
        template_hash=templates[0] if templates else None,
    )
