"""The ``function`` reward: a reward function written for TRL, ms-swift or verl, run unchanged.

    [rewards.math]
    kind = "function"
    function = "trl.rewards:accuracy_reward"     # or "my_rewards.py:score" (relative to this file)
    convention = "trl"                           # "trl" | "swift" | "verl"

The function is imported when the worker sets the reward up (a bad name fails the worker at start) and
called with the arguments its trainer would pass (see :mod:`rewardq.workers.rewards.functions`), a whole
chunk per call where the convention allows. Sync and async functions alike; async calls of one chunk
run concurrently on one event loop per process. A returned number is ``ok``, None or NaN
``unscorable``, anything else ``error``; an exception is ``error`` with its text. When a call that
covers several samples raises, each of its samples is called alone (``isolate_errors``), so that one
bad sample fails alone; functions whose values depend on the whole batch should turn that off.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationInfo, field_validator, model_validator

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.workers.process.loop import LOOP_KEY, LoopThread
from rewardq.workers.rewards.base import Reward, RewardOptions, Score
from rewardq.workers.rewards.functions import CONVENTIONS, Call, Convention
from rewardq.workers.rewards.functions.loading import (
    attribute,
    module_loader,
    resolve_name,
    source_identity,
    split_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from rewardq.workers.process.resources import WorkerResources

log = logging.getLogger(__name__)


class FunctionOptions(RewardOptions):
    """Which function, which trainer's convention, and how to build and call it."""

    function: str
    convention: Literal["trl", "swift", "verl"]
    init: dict[str, Any] | None = None
    isolate_errors: bool = True
    batch: bool = False
    data_source_column: str = "data_source"
    ground_truth_column: str = "ground_truth"
    data_source: str | None = None

    @field_validator("function")
    @classmethod
    def _named(cls, value: str, info: ValidationInfo) -> str:
        rewards_file = (info.context or {}).get("rewards_file")
        base = Path(rewards_file).parent if rewards_file is not None else Path.cwd()
        return resolve_name(value, base)

    @model_validator(mode="after")
    def _verl_only(self) -> FunctionOptions:
        verl_only = {"batch", "data_source_column", "ground_truth_column", "data_source"}
        misplaced = sorted(verl_only & self.model_fields_set) if self.convention != "verl" else []
        if misplaced:
            raise ValueError(f"{', '.join(misplaced)}: only for convention 'verl'")
        return self


class FunctionReward(Reward):
    """A trainer's reward function, imported at set-up and called the way its trainer calls it."""

    kind = "function"
    version = "1"
    timeout_default = 120.0
    Options = FunctionOptions
    options: FunctionOptions

    _convention: Convention
    _fn: Callable[..., Any]
    _loop: LoopThread

    def setup(self, resources: WorkerResources) -> None:
        convention = CONVENTIONS[self.options.convention](self.options)
        where, attr = split_name(self.options.function)
        try:
            module = convention.load(module_loader(self.options.function))
            target = attribute(module, attr)
            fn = convention.build(target, self.options.init)
        except Exception as e:
            raise RewardSetupError(
                f"reward {self.name!r}: cannot load {self.options.function!r}: {type(e).__name__}: {e}"
            ) from e
        if not callable(fn):
            raise RewardSetupError(f"reward {self.name!r}: {self.options.function!r} is not callable")
        self._convention = convention
        self._fn = fn
        self._loop = resources.shared(LOOP_KEY, LoopThread)
        log.info("reward %s: %s (%s convention) from %s", self.name, attr, convention.name, where)

    def identity(self) -> dict[str, str]:
        return source_identity(self.options.function)

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        if not hasattr(self, "_fn"):
            raise RuntimeError(f"reward {self.name!r} was not set up (setup() imports its function)")
        plan = self._convention.plan(samples)
        scores: list[Score | None] = [None] * len(samples)
        for i, settled in plan.settled.items():
            scores[i] = settled
        failed: list[Call] = []
        for call, outcome in zip(plan.calls, self._invoke(plan.calls), strict=True):
            if isinstance(outcome, BaseException) and len(call.indices) > 1 and self.options.isolate_errors:
                log.warning(
                    "reward %s: a call of %d samples raised %r; calling each alone",
                    self.name,
                    len(call.indices),
                    outcome,
                )
                failed.append(call)
            else:
                self._fill(scores, call, outcome)
        if failed:
            self._isolate(samples, [i for call in failed for i in call.indices], scores)
        return [s if s is not None else Score.failed("no score") for s in scores]

    def _isolate(self, samples: Sequence[Sample], indices: list[int], scores: list[Score | None]) -> None:
        """Call each sample alone (async ones concurrently) after a batch call failed."""
        calls: list[Call] = []
        for i in indices:
            plan = self._convention.plan([samples[i]])
            if 0 in plan.settled:
                scores[i] = plan.settled[0]
            calls.extend(Call((i,), c.args, c.kwargs) for c in plan.calls)
        for call, outcome in zip(calls, self._invoke(calls), strict=True):
            self._fill(scores, call, outcome)

    def _fill(self, scores: list[Score | None], call: Call, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            error = Score.failed(f"{type(outcome).__name__}: {outcome}")
            for i in call.indices:
                scores[i] = error
            return
        for i, score in zip(call.indices, self._convention.read(outcome, len(call.indices)), strict=True):
            scores[i] = score

    def _invoke(self, calls: list[Call]) -> list[Any]:
        """Each call's result or the exception it raised; sync calls in turn, async ones concurrently."""
        outcomes: list[Any] = [None] * len(calls)
        pending: dict[int, Any] = {}
        for k, call in enumerate(calls):
            try:
                result = self._fn(*call.args, **call.kwargs)
            except Exception as e:
                outcomes[k] = e
                continue
            if inspect.isawaitable(result):
                pending[k] = result
            else:
                outcomes[k] = result
        if pending:
            for k, result in zip(pending, self._loop.gather(pending.values()), strict=True):
                outcomes[k] = result
        return outcomes
