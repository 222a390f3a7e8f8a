"""Offline rescoring of saved rollouts, streamed in constant memory: ``rewardq score``.

Two passes over the file. The first reads and checks every record (with its line number) and enqueues
nothing: bad input is rejected before anything is sent. The second reads the file again a chunk at a
time and keeps at most ``window`` chunks in flight: it enqueues a chunk (at rescoring priority, so
training traffic goes first), and once the window is full it waits for the oldest chunk and writes it,
so the output is in input order and the client's memory and the broker's queue are bounded by the
window, not by the file.

Resuming: given the scores an earlier, interrupted run of the same job left in the audit
(:class:`StoredScores`, looked up by sample content and scorer fingerprint), only the rest is sent;
the output file is written whole again, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from tqdm import tqdm

from rewardq.catalog import check_weights
from rewardq.chunking import Extents
from rewardq.client import RewardClient, ScoreHandle
from rewardq.dumps import check_file, dump_rows, resolve_format
from rewardq.formats import FormatName, Row
from rewardq.results import weighted_total
from rewardq.rollouts import RecordWriter
from rewardq.samples import row_group_key
from rewardq.serving import REDIS_SCHEMES
from rewardq.stalls import StallNote
from rewardq.wire.errors import BrokerError, BrokerLost, InvalidInputError, Problem
from rewardq.wire.keys import RESCORE_PRIORITY
from rewardq.wire.schema import STATUSES, Status

DEFAULT_WINDOW = 16
LOOKUP_AHEAD = 4  # chunks whose audit lookup runs ahead of their sending, when resuming
# What a lost or full broker raises from send_task or while results are gathered (BrokerLost: the
# client's own one-line error once its publish retries are spent; a refused first connection is not one).
BROKER_ERRORS = (OperationalError, RedisError, ConnectionError, BrokerLost)


class Stored(NamedTuple):
    """A score an earlier run of the same job left in the audit."""

    value: float | None
    status: Status
    error: str | None
    steps: list[float | None] | None = None


class StoredScores(Protocol):
    """Scores already in the audit for this run: per reward, each row's stored score or None."""

    def lookup(self, rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Sequence[Stored | None]]: ...


@dataclass
class RescoreSummary:
    """What a run did, per reward: how many rows got each status, the mean of the ok values, and how
    many scores were taken from the audit instead of being sent."""

    weights: dict[str, float]
    samples: int = 0
    sent: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    ok_sums: dict[str, float] = field(default_factory=dict)
    resumed: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for name, weight in self.weights.items():
            counts = self.counts.get(name, {})
            ok = counts.get("ok", 0)
            row: dict[str, Any] = {
                "reward": name,
                "weight": weight,
                "mean": self.ok_sums.get(name, 0.0) / ok if ok else None,
                **{status: counts.get(status, 0) for status in STATUSES},
                "from audit": self.resumed.get(name, 0),
            }
            out.append(row)
        return out


class RescoreInterrupted(KeyboardInterrupt):
    """Raised when a rescoring run is interrupted (Ctrl-C); the message says how far it got, where the
    scored records are kept and how to resume. A KeyboardInterrupt still, so callers stop as before."""


@dataclass
class _Chunk:
    rows: list[Row]
    values: dict[str, list[float | None]]
    statuses: dict[str, list[Status]]
    errors: dict[str, dict[int, str]]
    steps: dict[str, dict[int, list[float | None]]] = field(default_factory=dict)
    sent: list[tuple[list[int], ScoreHandle]] = field(default_factory=list)


def score_file(
    client: RewardClient,
    source: Path,
    out: Path | None,
    weights: Mapping[str, float],
    *,
    run_id: str,
    step: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    window: int = DEFAULT_WINDOW,
    rollout_format: FormatName = "auto",
    fields: Mapping[str, str] | None = None,
    stored: StoredScores | None = None,
    priority: int | None = RESCORE_PRIORITY,
    allow_scorer_change: bool = False,
    started: float | None = None,
) -> RescoreSummary:
    """Score every sample of ``source``; each output line is the input record plus ``rewards``,
    ``reward`` (the weighted total), ``reward_status`` and, where any, ``reward_errors``.

    ``timeout`` bounds the wait for each chunk (default REWARDQ_TIMEOUT). A broker failure mid-run is
    a :class:`BrokerError`; what was sent before it is scored and audited by the workers, and a rerun
    with the same ``run_id`` and ``stored`` takes it from the audit; so does a rerun after Ctrl-C
    (:class:`RescoreInterrupted`). ``allow_scorer_change``: see :meth:`RewardClient.submit`.
    ``started``: when the command started (``time.monotonic()``), from which REWARDQ_SERVE_WAIT counts.
    """
    if window < 1:
        raise InvalidInputError([Problem("--window", f"must be at least 1, got {window}")])
    weights = check_weights(weights, client.known_rewards)  # fail on names before reading a large file
    client.require_serving(weights, since=started)  # and on rewards no worker serves
    max_bytes = client.settings.max_record_bytes
    fmt = resolve_format(source, rollout_format, fields or {}, max_bytes)
    grouped = client.group_rewards.intersection(weights)
    extents = Extents() if grouped else None
    total = check_file(source, fmt, max_bytes, row_steps=step is None, extents=extents)
    size = client.settings.chunk_size
    sizes = [end - start for start, end in extents.spans(size)] if extents is not None else None
    wait = client.settings.timeout if timeout is None else timeout
    summary = RescoreSummary(dict(weights))
    inflight: deque[_Chunk] = deque()
    writer = RecordWriter(out) if out is not None else None
    with (
        writer if writer is not None else nullcontext(),
        tqdm(
            total=total,
            unit="sample",
            desc=f"scoring {source.name}",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
        StallNote(client.settings, weights) if _on_redis(client) else nullcontext() as note,
    ):
        problems: list[Problem] = []
        rows = (r for r in dump_rows(source, fmt, max_bytes, problems) if isinstance(r, Row))
        if sizes is None:
            chunks = iter(lambda: list(islice(rows, size)), [])
        else:  # chunks that keep every group whole, as the first pass found them
            chunks = (list(islice(rows, n)) for n in sizes)
        try:
            for chunk_rows, found in _looked_up(chunks, stored):
                chunk = _send(
                    client,
                    chunk_rows,
                    weights,
                    _whole_groups(chunk_rows, found, grouped),
                    run_id,
                    step,
                    str(source),
                    priority,
                    allow_scorer_change=allow_scorer_change,
                )
                inflight.append(chunk)
                if len(inflight) >= window:
                    _finish(inflight.popleft(), weights, wait, writer, summary, bar)
                    if note is not None:
                        note.progress()
            while inflight:
                _finish(inflight.popleft(), weights, wait, writer, summary, bar)
                if note is not None:
                    note.progress()
        except KeyboardInterrupt as e:
            kept = f", kept in {writer.partial}" if writer is not None else ""
            raise RescoreInterrupted(
                f"interrupted: {summary.samples:,} of {total:,} scored{kept}; "
                "rerun the same command (same --run-id) to resume"
            ) from e
        except BROKER_ERRORS as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise BrokerError(
                f"the broker failed after {summary.samples:,} of {total:,} samples "
                f"({type(e).__name__}: {first_line}); what was sent is scored and audited by the workers: "
                f"rerun the same command (same --run-id) to resume"
            ) from e
        if writer is not None:
            writer.commit()
    return summary


def _on_redis(client: RewardClient) -> bool:
    return str(client.settings.broker_url or "").startswith(REDIS_SCHEMES)


def _looked_up(
    chunks: Iterator[list[Row]], stored: StoredScores | None
) -> Iterator[tuple[list[Row], Mapping[str, Sequence[Stored | None]]]]:
    """Each chunk with what the audit holds of it. The lookups run in a thread of their own, up to
    ``LOOKUP_AHEAD`` chunks ahead, so that they overlap the waits for results instead of adding to them."""
    if stored is None:
        for rows in chunks:
            yield rows, {}
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardq-resume") as pool:
        ahead: deque[tuple[list[Row], Future[Mapping[str, Sequence[Stored | None]]]]] = deque()
        for rows in chunks:
            ahead.append((rows, pool.submit(stored.lookup, [r.row for r in rows])))
            if len(ahead) > LOOKUP_AHEAD:
                done, found = ahead.popleft()
                yield done, found.result()
        while ahead:
            done, found = ahead.popleft()
            yield done, found.result()


def _whole_groups(
    rows: list[Row], found: Mapping[str, Sequence[Stored | None]], grouped: frozenset[str]
) -> Mapping[str, Sequence[Stored | None]]:
    """What the audit holds of a chunk, less the rows of group-level rewards' groups it holds only in part:
    those are scored again with their whole group."""
    partial = [r for r in grouped if r in found and None in found[r]]
    if not partial:
        return found
    keys = [row_group_key(r.row) for r in rows]
    out = dict(found)
    for reward in partial:
        hits = list(zip(keys, found[reward], strict=True))
        incomplete = {key for key, hit in hits if hit is None}
        out[reward] = [None if key in incomplete else hit for key, hit in hits]
    return out


def _send(
    client: RewardClient,
    rows: list[Row],
    weights: Mapping[str, float],
    found: Mapping[str, Sequence[Stored | None]],
    run_id: str,
    step: int | None,
    source: str,
    priority: int | None,
    *,
    allow_scorer_change: bool = False,
) -> _Chunk:
    """Enqueue what is not in the audit yet: one submission per set of rewards missing the same rows and
    per step among them (each row's own, from the dump, unless ``step`` is given for all)."""
    n = len(rows)
    chunk = _Chunk(
        rows,
        values={r: [None] * n for r in weights},
        statuses={r: ["timeout"] * n for r in weights},
        errors={r: {} for r in weights},
        steps={r: {} for r in weights},
    )
    missing_by_reward: dict[tuple[int, ...], list[str]] = {}
    for reward in weights:
        have = found.get(reward)
        missing: list[int] = []
        for i in range(n):
            hit = have[i] if have is not None else None
            if hit is None:
                missing.append(i)
                continue
            chunk.values[reward][i], chunk.statuses[reward][i] = hit.value, hit.status
            if hit.error is not None:
                chunk.errors[reward][i] = hit.error
            if hit.steps is not None:
                chunk.steps[reward][i] = hit.steps
        if missing:
            missing_by_reward.setdefault(tuple(missing), []).append(reward)
    for missing_rows, rewards in missing_by_reward.items():
        by_step: dict[int | None, list[int]] = {}  # a task has one step: one submission per step
        for i in missing_rows:
            by_step.setdefault(rows[i].step if step is None else step, []).append(i)
        for row_step, indices in by_step.items():
            handle = client.submit(
                [rows[i].row for i in indices],
                {r: 1.0 for r in rewards},
                run_id=run_id,
                step=row_step,
                lines=[rows[i].line for i in indices],
                source=source,
                priority=priority,
                allow_scorer_change=allow_scorer_change,
            )
            chunk.sent.append((indices, handle))
    return chunk


def _finish(
    chunk: _Chunk,
    weights: Mapping[str, float],
    timeout: float,
    writer: RecordWriter | None,
    summary: RescoreSummary,
    bar: tqdm[Any],
) -> None:
    """Wait for a chunk's scores, write its records in order and count them."""
    for missing, handle in chunk.sent:
        result = handle.get(timeout=timeout)
        for reward in handle.weights:
            for j, i in enumerate(missing):
                chunk.values[reward][i] = result.rewards[reward][j]
                chunk.statuses[reward][i] = result.statuses[reward][j]
                if j in result.errors[reward]:
                    chunk.errors[reward][i] = result.errors[reward][j]
                if (steps := result.steps[reward][j]) is not None:
                    chunk.steps[reward][i] = steps
    sent = len({i for missing, _ in chunk.sent for i in missing})  # rows sent for at least one reward
    n = len(chunk.rows)
    for reward in weights:
        counts = summary.counts.setdefault(reward, {})
        for i in range(n):
            status = chunk.statuses[reward][i]
            counts[status] = counts.get(status, 0) + 1
            if status == "ok":
                summary.ok_sums[reward] = summary.ok_sums.get(reward, 0.0) + (chunk.values[reward][i] or 0.0)
        unsent = n - sum(len(m) for m, h in chunk.sent if reward in h.weights)
        summary.resumed[reward] = summary.resumed.get(reward, 0) + unsent
    if writer is not None:
        writer.write([{**row.record, **_fields(chunk, weights, i)} for i, row in enumerate(chunk.rows)])
    summary.samples += n
    summary.sent += sent
    if sent < n:  # rows taken from the audit do not count towards the rate and ETA of this run
        bar.total -= n - sent
    bar.update(sent)


def _fields(chunk: _Chunk, weights: Mapping[str, float], i: int) -> dict[str, Any]:
    values = {r: chunk.values[r][i] for r in weights}
    out: dict[str, Any] = {
        "rewards": values,
        "reward": weighted_total(values, weights),
        "reward_status": {r: chunk.statuses[r][i] for r in weights},
    }
    errors = {r: chunk.errors[r][i] for r in weights if i in chunk.errors[r]}
    if errors:
        out["reward_errors"] = errors
    steps = {r: chunk.steps[r][i] for r in weights if i in chunk.steps[r]}
    if steps:
        out["reward_steps"] = steps
    return out
