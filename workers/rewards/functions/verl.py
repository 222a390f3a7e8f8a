"""verl's convention: ``compute_score(data_source, solution_str, ground_truth, extra_info)`` per sample.

verl's naive reward manager calls ``compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=...)`` once per sample (``verl.experimental.reward_loop.reward_manager.naive``); its batch
manager (``batch = true`` here) calls ``compute_score(data_sources=[...], solution_strs=[...],
ground_truths=[...], extra_infos=[...])`` once per batch. A result is a number or a dict whose
``"score"`` is the reward (the dict is kept as the audit's raw output). ``init`` is verl's
``custom_reward_function.reward_kwargs``: keyword arguments added to every call.

Per sample: ``data_source`` is the column named by ``data_source_column`` (default ``data_source``,
else the ``data_source`` option); ``ground_truth`` the column named by ``ground_truth_column``, else
``reward_model.ground_truth`` as in verl's datasets; a sample with neither is ``unscorable``;
``extra_info`` a copy of the ``extra_info`` column (``{}`` without one) with verl's ``num_turns`` and
``rollout_reward_scores`` defaulted; ``solution_str`` the completion's text.

verl's scorers (``verl.utils.reward_score``) need none of verl's training stack, but ``import verl``
imports it (Ray, tensordict …). When importing the function fails inside ``verl/__init__.py``, ``verl``
and ``verl.utils`` are replaced by empty packages that point at verl's files, and the import is tried
once more: the scorers then import alone (``pip install --no-deps verl`` is enough).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import orjson

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.functions.convention import Call, Convention, Plan, read_list, to_score

log = logging.getLogger(__name__)


class VerlConvention(Convention):
    """verl's ``compute_score``: per sample, or per batch with ``batch = true``."""

    name: ClassVar[str] = "verl"

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.batch: bool = options.batch

    def build(self, target: Any, init: Mapping[str, Any] | None) -> Callable[..., Any]:
        return functools.partial(target, **init) if init else target

    def load(self, load_module: Callable[[], ModuleType]) -> ModuleType:
        try:
            return load_module()
        except ImportError as e:
            if not (_raised_in_verls_init(e) and stub_verl()):
                raise
            log.info("verl's training stack is not importable (%s); importing its scorers alone", e)
            try:
                return load_module()
            except ImportError:
                raise e from None

    def plan(self, samples: Sequence[Sample]) -> Plan:
        plan = Plan([])
        ready: list[tuple[int, dict[str, Any]]] = []
        for i, sample in enumerate(samples):
            args = self._arguments(sample)
            if isinstance(args, Score):
                plan.settled[i] = args
            else:
                ready.append((i, args))
        if self.batch and ready:
            plan.calls.append(
                Call(
                    tuple(i for i, _ in ready),
                    kwargs={
                        "data_sources": [a["data_source"] for _, a in ready],
                        "solution_strs": [a["solution_str"] for _, a in ready],
                        "ground_truths": [a["ground_truth"] for _, a in ready],
                        "extra_infos": [a["extra_info"] for _, a in ready],
                    },
                )
            )
        else:
            plan.calls.extend(Call((i,), kwargs=args) for i, args in ready)
        return plan

    def read(self, result: Any, count: int) -> list[Score]:
        if self.batch:
            results = result.tolist() if hasattr(result, "tolist") else result
            if isinstance(results, list | tuple) and len(results) == count:
                return [_read_one(r) for r in results]
            return read_list(results, count)
        return [_read_one(result)]

    def _arguments(self, sample: Sample) -> dict[str, Any] | Score:
        columns = sample.columns
        data_source = columns.get(self.options.data_source_column, self.options.data_source)
        if data_source is None:
            return Score.unscorable(f"no data source in column {self.options.data_source_column!r}")
        ground_truth = columns.get(self.options.ground_truth_column)
        if ground_truth is None and isinstance(columns.get("reward_model"), dict):
            ground_truth = columns["reward_model"].get("ground_truth")
        if ground_truth is None:
            return Score.unscorable(
                f"no ground truth in column {self.options.ground_truth_column!r} "
                "or 'reward_model.ground_truth'"
            )
        extra = columns.get("extra_info")
        extra_info = dict(extra) if isinstance(extra, dict) else {}
        extra_info.setdefault("rollout_reward_scores", {})
        if not self.batch:
            extra_info.setdefault("num_turns", None)
        return {
            "data_source": data_source,
            "solution_str": sample.completion_text,
            "ground_truth": ground_truth,
            "extra_info": extra_info,
        }


def _read_one(result: Any) -> Score:
    """A number, or verl's dict result: its ``score`` is the reward, the whole dict the raw output."""
    if isinstance(result, dict):
        raw = orjson.dumps(result, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        if "score" not in result:
            return Score(None, "error", "the function returned a dict without 'score'", raw)
        return to_score(result["score"], raw)
    return to_score(result)


def _raised_in_verls_init(error: BaseException) -> bool:
    """Whether the import failed inside ``verl/__init__.py`` (its training stack), not elsewhere."""
    spec = importlib.util.find_spec("verl") if "verl" not in sys.modules else None
    if spec is None or spec.origin is None:
        return False
    init = str(Path(spec.origin).resolve())
    traceback = error.__traceback__
    while traceback is not None:
        if str(Path(traceback.tb_frame.f_code.co_filename).resolve()) == init:
            return True
        traceback = traceback.tb_next
    return False


def stub_verl() -> bool:
    """Make ``verl`` and ``verl.utils`` empty packages over verl's installed files, so that its scorers
    import without its training stack. False (and nothing changed) when verl is not installed or its
    real package is already imported."""
    if "verl" in sys.modules:
        return False
    spec = importlib.util.find_spec("verl")  # a top-level spec: verl/__init__ is not run
    if spec is None or not spec.submodule_search_locations:
        return False
    for name in [n for n in sys.modules if n.startswith("verl.")]:
        del sys.modules[name]  # what a failed `import verl` left half-imported
    root = Path(next(iter(spec.submodule_search_locations)))
    verl = _empty_package("verl", root)
    verl.utils = _empty_package("verl.utils", root / "utils")  # type: ignore[attr-defined]
    return True


def _empty_package(name: str, path: Path) -> ModuleType:
    module = ModuleType(name, f"rewardq's stand-in for {name}: its submodules import, its __init__ does not")
    module.__path__ = [str(path)]
    module.__spec__ = ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = module.__path__
    sys.modules[name] = module
    return module
