"""Validating a task at the worker: its envelope (a malformed one raises :class:`InvalidTask`) and each
of its samples (a malformed sample becomes that sample's ``error`` score; the others are scored)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rewardq.samples import JSON_TOO_DEEP, describe_errors, json_size
from rewardq.wire.errors import RewardqError
from rewardq.wire.schema import Sample, TaskEnvelope, stored_reference
from rewardq.workers.rewards.base import Score
from rewardq.workers.runtime.context import WorkerRuntime

log = logging.getLogger(__name__)

_SAMPLES = TypeAdapter(list[Sample])
_SAMPLE = TypeAdapter(Sample)


class InvalidTask(RewardqError):
    """Raised when a task's envelope is malformed, so it can be neither scored nor audited."""


@dataclass
class Prepared:
    """A validated task on its way through score → persist; ``scores`` fill in as it goes."""

    task: TaskEnvelope
    samples: list[Sample | None]
    scores: list[Score | None]
    scorer: str = "unavailable"
    latency_ms: float = 0.0


def prepare(runtime: WorkerRuntime, payload: Mapping[str, Any]) -> Prepared:
    """Validate a payload's envelope (InvalidTask if malformed) and each of its samples."""
    if (reference := stored_reference(payload)) is not None:  # admission could not put them inline
        raise InvalidTask(
            f"its {reference[1]} samples are not in the broker under {reference[0]}, or are not a JSON "
            "list of that many: expired (REWARDQ_RESULT_EXPIRES) before a worker took the task, or lost "
            "with the broker's data"
        )
    try:
        task = TaskEnvelope.model_validate(payload)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
        log.error("rejected task: %s", problems)
        raise InvalidTask(f"rejected task: {problems}") from e
    samples, scores = _validate_samples(task.samples, runtime.settings.max_record_bytes)
    return Prepared(task, samples, scores)


def _validate_samples(raw: Sequence[Any], max_bytes: int) -> tuple[list[Sample | None], list[Score | None]]:
    """Validate each sample again at the worker; invalid ones get an error score, the rest stay None."""
    scores: list[Score | None] = [None] * len(raw)
    sizes = [json_size(s) if isinstance(s, dict) else 0 for s in raw]
    if all(size is not None and size <= max_bytes for size in sizes):
        try:
            return list(_SAMPLES.validate_python(raw)), scores
        except ValidationError:
            pass
    samples: list[Sample | None] = []
    for i, (item, size) in enumerate(zip(raw, sizes, strict=True)):
        if size is None:
            scores[i] = Score.failed(f"invalid sample: {JSON_TOO_DEEP}")
            samples.append(None)
            continue
        if size > max_bytes:
            scores[i] = Score.failed(
                f"invalid sample: {size} bytes as JSON, over the limit of {max_bytes} "
                "(the workers' REWARDQ_MAX_RECORD_BYTES)"
            )
            samples.append(None)
            continue
        try:
            samples.append(_SAMPLE.validate_python(item))
        except ValidationError as e:
            problem = describe_errors(e.errors(include_url=False))
            scores[i] = Score.failed(
                f"invalid sample: field '{problem.field or 'sample'}': {problem.message}"
            )
            samples.append(None)
    return samples, scores
