"""ms-swift's convention: an ORM class instantiated once, called once per batch with the completions.

ms-swift builds a registered ORM as ``orms[name](args=args)`` (``args`` is its GRPOConfig) or
``orms[name]()``, and calls ``orm(completions, **reward_kwargs)`` (``swift.rl_core.grpo_algorithm``):
``completions`` are the last message's content (plain strings for text), and the keyword lists are
``messages`` (the whole conversation, the completion last), ``trainer_state`` and each dataset column,
None where a sample lacks one. Here ``init`` stands in for GRPOConfig: ``cls(args=<namespace of
init>)``, or ``cls()`` without it; a worker has no trainer, so ``trainer_state`` is None. A plain
function (not a class) is called as it is, as ms-swift does with a callable in ``reward_funcs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

from rewardq.wire.errors import ConfigError
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.functions.convention import (
    Call,
    Convention,
    Plan,
    batched_columns,
    chat,
    read_list,
)


def swift_messages(sample: Sample) -> list[dict[str, Any]]:
    """The conversation ms-swift keeps for a sample: the prompt's messages, then the completion."""
    return chat(sample.prompt, "user") + chat(sample.completion, "assistant")


class SwiftConvention(Convention):
    """``orm(completions, messages=..., trainer_state=..., **columns)``, the ORM built once."""

    name: ClassVar[str] = "swift"

    def build(self, target: Any, init: Mapping[str, Any] | None) -> Callable[..., Any]:
        if not inspect.isclass(target):
            if init is not None:
                raise ConfigError("'init' builds an ms-swift ORM class; the function given is not a class")
            return target
        orm_class: Any = target
        return orm_class(args=SimpleNamespace(**init)) if init is not None else orm_class()

    def plan(self, samples: Sequence[Sample]) -> Plan:
        messages = [swift_messages(s) for s in samples]
        completions = [m[-1].get("content") if m else None for m in messages]
        kwargs = {**batched_columns(samples), "messages": messages, "trainer_state": None}
        return Plan([Call(tuple(range(len(samples))), args=(completions,), kwargs=kwargs)])

    def read(self, result: Any, count: int) -> list[Score]:
        return read_list(result, count)
