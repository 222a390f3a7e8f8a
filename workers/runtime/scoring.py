"""Scoring validated tasks: one call to the reward for the valid samples of one or more tasks.

A reward that fails to build or raises fails its samples with the error text, never the worker; one
that outlives its ``timeout`` answers ``timeout`` (:mod:`.child`, :mod:`.watchdog`). A chunk whose reward
is stuck in this worker goes back to the broker (:class:`~.watchdog.HandBack`).

A reward that sees groups (``Reward.sees``) gets whole groups of each task, as the producer chunked them;
a group over ``MAX_GROUP_SIZE`` fails, and the groups of coalesced tasks never merge, even where their keys
are equal (each sample's group is qualified with its task's place in the call).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from rewardq.wire.errors import RewardqError
from rewardq.wire.groups import MAX_GROUP_SIZE, oversize_problem
from rewardq.wire.schema import UNAVAILABLE_SCORER, Sample
from rewardq.workers.process import metrics
from rewardq.workers.rewards.base import Score
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.validate import Prepared
from rewardq.workers.runtime.watchdog import HandBack

log = logging.getLogger(__name__)


def score_together(runtime: WorkerRuntime, items: Sequence[Prepared]) -> None:
    """Score tasks of one reward in a single call to the reward, as if each had been scored alone.

    Every item gets the call's scorer fingerprint and latency; a reward's scores do not depend on
    what a sample is batched with, so coalescing changes no value.
    """
    names = {item.task.reward for item in items}
    if len(names) != 1:
        raise ValueError(f"score_together takes tasks of one reward, got {sorted(names)}")
    samples = [s for item in items for s in item.samples]
    scores = [s for item in items for s in item.scores]
    sizes = [len(item.samples) for item in items]
    scorer, latency_ms = _score(runtime, names.pop(), samples, scores, sizes)
    start = 0
    for item in items:
        end = start + len(item.scores)
        item.scores, item.scorer, item.latency_ms = scores[start:end], scorer, latency_ms
        start = end


def _score(
    runtime: WorkerRuntime,
    name: str,
    samples: list[Sample | None],
    scores: list[Score | None],
    sizes: list[int],
) -> tuple[str, float]:
    """Fill ``scores`` for the valid samples (``sizes``: how many samples each task of the call holds);
    returns the scorer's fingerprint and the latency in ms."""
    valid = {i: s for i, s in enumerate(samples) if s is not None}
    try:
        reward = runtime.reward(name)
    except RewardqError as e:
        error, scorer = str(e), UNAVAILABLE_SCORER
    except Exception as e:  # a reward that fails to build (missing model …) fails its samples, not the worker
        log.exception("building reward %s failed", name)
        error, scorer = f"reward {name!r} failed to load: {type(e).__name__}: {e}", UNAVAILABLE_SCORER
    else:
        scorer = reward.fingerprint
        if reward.reward.sees == "group":
            valid = _whole_groups(valid, scores, sizes)
        started = time.perf_counter()
        try:
            out = reward.score(list(valid.values()))
            if len(out) != len(valid):
                raise RuntimeError(f"returned {len(out)} scores for {len(valid)} samples")
        except HandBack:
            raise
        except Exception as e:
            log.exception("reward %s failed on a chunk", name)
            out = [Score.failed(f"reward {name!r} failed: {type(e).__name__}: {e}")] * len(valid)
        for i, score in zip(valid, out, strict=True):
            scores[i] = score
        seconds = time.perf_counter() - started
        metrics.chunk_scored(name, reward.reward.kind, out, seconds)
        return scorer, seconds * 1000.0
    for i in valid:
        scores[i] = Score.failed(error)
    return scorer, 0.0


def _whole_groups(
    valid: dict[int, Sample], scores: list[Score | None], sizes: list[int]
) -> dict[int, Sample]:
    """The samples a group-level reward scores: a group over ``MAX_GROUP_SIZE`` fails instead, and where
    the call holds several tasks each sample's group is qualified with its task's place in the call."""
    tasks = [k for k, size in enumerate(sizes) for _ in range(size)]  # each sample's task in the call
    members: dict[tuple[int, str], list[int]] = {}
    for i, sample in valid.items():
        members.setdefault((tasks[i], sample.group_key), []).append(i)
    several = len(sizes) > 1
    out: dict[int, Sample] = {}
    for (task, key), indices in members.items():
        if len(indices) > MAX_GROUP_SIZE:
            error = f"invalid sample: field 'group': {oversize_problem(key, len(indices))}"
            for i in indices:
                scores[i] = Score.failed(error)
            continue
        for i in indices:
            out[i] = valid[i].model_copy(update={"group": f"{task}/{key}"}) if several else valid[i]
    return dict(sorted(out.items()))
