"""A worker's Prometheus metrics: what it scored, how long each step took, what its judges and sandboxes
did, what its deadlines stopped and what it parked (the table is in docs/metrics.md).

Off unless ``rewardq worker --metrics-port`` turns them on (:func:`enable`, from
:mod:`rewardq.workers.runtime.exposition`); off, every hook here is one check of a module variable and
returns. prometheus-client is imported only when they are on, after ``PROMETHEUS_MULTIPROC_DIR`` is set:
its values live in per-process files of that directory, so a prefork child's counts reach the one
scrape. The metrics are process-wide by prometheus-client's design (a value belongs to its process's
file), hence the one module variable. Counts are taken in the worker's processes only: a CPU reward's
killable children return scores, and those are counted here when they come back.

Hooks resolve labelled children once per chunk (a small cache keyed by label values), never per sample.
"""

from __future__ import annotations

import json
import logging
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any

# Seconds: from a few milliseconds (a rule's chunk) to minutes (a judge's chunk under a retry storm).
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SAMPLE_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_META, _STATUS = attrgetter("meta"), attrgetter("status")

log = logging.getLogger(__name__)


class WorkerMetrics:
    """The metric families of one worker (every process of it writes the same files)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.samples = Counter("rewardq_samples_scored", "Samples scored.", ["reward", "status"])
        self.queue_wait = Histogram(
            "rewardq_queue_wait_seconds",
            "From the producer sending a task to a worker starting it.",
            ["reward"],
            buckets=SECONDS_BUCKETS,
        )
        self.chunk_seconds = Histogram(
            "rewardq_chunk_seconds", "One call of a reward on a chunk.", ["reward"], buckets=SECONDS_BUCKETS
        )
        self.sample_seconds = Histogram(
            "rewardq_sample_seconds",
            "A chunk's scoring time per sample (one observation per chunk).",
            ["reward"],
            buckets=SAMPLE_BUCKETS,
        )
        self.audit_seconds = Histogram(
            "rewardq_audit_write_seconds",
            "One audit transaction (its retries included).",
            buckets=SECONDS_BUCKETS,
        )
        self.coalesced = Histogram(
            "rewardq_coalesced_tasks", "Tasks scored in one coalesced call.", ["reward"], buckets=SIZE_BUCKETS
        )
        self.judge_requests = Counter("rewardq_judge_requests", "HTTP attempts sent to a judge.", ["replica"])
        self.judge_retries = Counter(
            "rewardq_judge_retries", "HTTP attempts that repeated a failed one.", ["replica"]
        )
        self.tokens = Counter(
            "rewardq_tokens",
            "Model tokens read (in) or written (out), from the scores' meta.",
            ["reward", "direction"],
        )
        self.cache_hits = Counter("rewardq_cache_hits", "Samples answered from the result cache.", ["reward"])
        self.cases = Counter(
            "rewardq_sandbox_cases", "Sandboxed test cases by outcome.", ["reward", "outcome"]
        )
        self.deadlines = Counter(
            "rewardq_deadline_hits", "Deadlines a reward's call ran past.", ["reward", "action"]
        )
        # livesum: a process's value leaves the sum when it is marked dead (runtime.exposition)
        self.held = Gauge("rewardq_tasks_held", "Tasks the worker holds.", multiprocess_mode="livesum")
        self.running = Gauge(
            "rewardq_tasks_running", "Tasks running in the worker's processes.", multiprocess_mode="livesum"
        )
        self.parked = Counter("rewardq_dlq_parked", "Tasks or messages parked in the DLQ.", ["reward"])
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, family: Any, *labels: str) -> Any:
        """``family.labels(*labels)``, resolved once and kept."""
        key = (id(family), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = family.labels(*labels)
        return found


_active: list[WorkerMetrics] = []  # the process's one, when on


def enable() -> WorkerMetrics:
    """Turn the metrics on in this process (and in the processes it forks)."""
    if not _active:
        _active.append(WorkerMetrics())
    return _active[0]


def active() -> WorkerMetrics | None:
    return _active[0] if _active else None


def chunk_scored(reward: str, kind: str, scores: Sequence[Any], seconds: float) -> None:
    """A reward's call on a chunk returned ``scores`` after ``seconds``: its times, and what its scores'
    meta says (judge tokens, cache hits) and, for the ``code`` kind, its cases' outcomes."""
    if not _active or not scores:
        return
    try:
        _chunk(_active[0], reward, kind, scores, seconds)
    except Exception:  # what a reward returned is not a Score (the audit says so): never fail the task
        log.warning("reward %s: the metrics of a chunk were not taken", reward, exc_info=True)


def _chunk(m: WorkerMetrics, reward: str, kind: str, scores: Sequence[Any], seconds: float) -> None:
    m.child(m.chunk_seconds, reward).observe(seconds)
    m.child(m.sample_seconds, reward).observe(seconds / len(scores))
    metas = [meta for meta in map(_META, scores) if meta is not None]
    if metas:
        tokens_in = sum(meta.prompt_tokens or 0 for meta in metas)
        tokens_out = sum(meta.completion_tokens or 0 for meta in metas)
        hits = sum(bool(meta.cache_hit) for meta in metas)
        if tokens_in:
            m.child(m.tokens, reward, "in").inc(tokens_in)
        if tokens_out:
            m.child(m.tokens, reward, "out").inc(tokens_out)
        if hits:
            m.child(m.cache_hits, reward).inc(hits)
    if kind == "code":
        for outcome, n in case_outcomes(s.raw for s in scores).items():
            m.child(m.cases, reward, outcome).inc(n)


def case_outcomes(raws: Iterable[str | None]) -> Tally[str]:
    """Case verdicts from the code kind's raw summaries (``passed``/``of``/``cases``): each kept verdict,
    and the cases past those kept as ``passed`` or ``not_passed``."""
    tally: Tally[str] = Tally()
    for raw in raws:
        if not raw:
            continue
        try:
            summary = json.loads(raw)
            kept = summary["cases"]
            tally.update(kept)
            passed_after = summary["passed"] - kept.count("passed")
            tally["passed"] += passed_after
            tally["not_passed"] += summary["of"] - len(kept) - passed_after
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return +tally


def samples_audited(tasks: Iterable[tuple[str, Iterable[Any]]], seconds: float) -> None:
    """One audit transaction took ``seconds`` and held, per task, its reward's name and its scores."""
    if not _active:
        return
    m = _active[0]
    m.audit_seconds.observe(seconds)
    for reward, scores in tasks:
        for status, n in Tally(map(_STATUS, scores)).items():
            m.child(m.samples, reward, status).inc(n)


def task_started(reward: Any, sent_at: Any, now: float) -> None:
    """A task of ``reward`` sent at ``sent_at`` (its header, when the producer set it) starts ``now``."""
    if _active and isinstance(reward, str) and isinstance(sent_at, int | float):
        m = _active[0]
        m.child(m.queue_wait, reward).observe(max(0.0, now - sent_at))


def coalesced(reward: str, tasks: int) -> None:
    if _active:
        m = _active[0]
        m.child(m.coalesced, reward).observe(tasks)


def judge_attempt(replica: str, retries: int) -> None:
    """An HTTP attempt to a judge's ``replica``, after ``retries`` failed ones."""
    if _active:
        m = _active[0]
        m.child(m.judge_requests, replica).inc()
        if retries:
            m.child(m.judge_retries, replica).inc()


def deadline_hit(reward: str, action: str) -> None:
    """A call of ``reward`` ran past its deadline: its child was stopped (``killed``), the chunk answered
    ``timeout`` while the in-process call ran on (``abandoned``), or a task of the still stuck reward went
    back to the broker (``handed_back``)."""
    if _active:
        m = _active[0]
        m.child(m.deadlines, reward, action).inc()


def tasks_held(n: int) -> None:
    if _active:
        _active[0].held.set(n)


def task_running(delta: int) -> None:
    """A task started (+1) or ended (-1) in this process."""
    if _active:
        _active[0].running.inc(delta)


def parked(reward: str | None) -> None:
    if _active:
        m = _active[0]
        m.child(m.parked, reward or "").inc()
