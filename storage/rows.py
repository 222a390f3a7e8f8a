"""The audit row, stated once: a row of ``scores`` is what :class:`rewardq.storage.models.ScoreRow` declares.

Everything else about the row is derived from that table here: the columns a writer gives
(:data:`COLUMNS`) and must give (:data:`REQUIRED`), the type a read returns (:class:`ScoreRecord`), and
the one place a worker's scored task becomes rows (:func:`audit_rows`). Adding an audit column is the
model, a migration, and its filler in :func:`audit_rows` (or a field of the scorer's ``ScoreMeta``,
whose fields are columns of the same name); ``tests/storage/test_rows.py`` fails until each is there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from sqlalchemy import Column

from rewardq.storage.models import ScoreRow, scores_table
from rewardq.storage.text import storable_text
from rewardq.wire.schema import Sample, TaskEnvelope, sample_id_of, sample_id_problem

CHAIN_COLUMNS: tuple[str, ...] = ("chain_seq", "chain_hash")
"""The columns the sealer fills (rewardq.storage.seal), chaining each row into its run's hash chain."""

COLUMNS: tuple[str, ...] = tuple(
    c.key for c in scores_table.columns if not c.primary_key and c.key not in CHAIN_COLUMNS
)
"""The columns a row may give, in table order; ``id`` is assigned by the database, the chain's
columns by the sealer."""

LATE_COLUMNS: tuple[str, ...] = ("group_key", "step_scores", "step_ends")
"""The last of :data:`COLUMNS`, added after rows were first sealed: the chain hashes them only where a row
sets one (:func:`rewardq.storage.chain.canonical`)."""

REQUIRED: tuple[str, ...] = tuple(
    c.key
    for c in scores_table.columns
    if c.key in COLUMNS and not c.nullable and c.default is None and c.server_default is None
)
"""Columns a row must give, not None (NOT NULL without a default). The others may be left out (None);
``created_at`` then is now."""


def _annotation(column: Column[Any]) -> Any:
    python_type = column.type.python_type
    return python_type | None if column.nullable else python_type


if TYPE_CHECKING:
    # A type checker reads a record's attributes, typed, from the model they are generated from.
    ScoreRecord = ScoreRow
else:
    ScoreRecord = dataclasses.make_dataclass(
        "ScoreRecord",
        [(c.key, _annotation(c)) for c in scores_table.columns],
        frozen=True,
        slots=True,
        namespace={"__doc__": "One stored score: a row of ``scores``, one field per column, in table order."},
    )
    ScoreRecord.__module__ = __name__


class Scored(Protocol):
    """A score as a worker audits it (``rewardq.workers.rewards.base.Score``)."""

    @property
    def value(self) -> float | None: ...
    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def raw(self) -> str | None: ...
    @property
    def meta(self) -> Any:
        """A dataclass instance (never None) whose fields are audit columns of the same names."""

    @property
    def steps(self) -> Sequence[float | None] | None: ...
    @property
    def step_ends(self) -> Sequence[int] | None: ...


def audit_rows(
    task: TaskEnvelope,
    samples: Sequence[Sample | None],
    scores: Sequence[Scored],
    *,
    scorer: str,
    latency_ms: float,
    attempts: int,
    worker_host: str,
    worker_gpu: str | None,
    store_text: bool,
    group_keys: bool = False,
) -> list[dict[str, Any]]:
    """One row per sample of ``task``: ``samples`` are its validated samples (None where invalid),
    ``scores`` their final scores; prompt and completion are kept only with ``store_text``. A sample's
    group key is kept where it names its group, and with ``group_keys`` (a group-level reward) where its
    prompt is its group too: a digest of the prompt costs a pointwise reward's rows half their building
    time, and tells nothing that ``sample_hash`` and the prompt do not."""
    now = datetime.now(UTC)
    rows = []
    for i, (item, sample, score) in enumerate(zip(task.samples, samples, scores, strict=True)):
        prompt_text = completion_text = None
        if store_text and sample is not None:
            prompt = sample.prompt
            prompt_text = prompt if isinstance(prompt, str | None) else orjson.dumps(prompt).decode()
            completion_text = sample.completion_text
        meta = score.meta
        rows.append(
            {
                "run_id": task.run_id,
                "step": task.step,
                "batch_id": task.batch_id,
                "sample_index": task.offset + i,
                "sample_hash": sample_hash(item),
                "sample_id": _sample_id(item),
                "reward": task.reward,
                "scorer": scorer,
                "value": score.value,
                "status": score.status,
                "error": storable_text(score.error),
                "raw": storable_text(score.raw),
                "latency_ms": latency_ms,
                "attempts": attempts,
                "worker_host": worker_host,
                "worker_gpu": worker_gpu,
                "created_at": now,
                "prompt_text": storable_text(prompt_text),
                "completion_text": storable_text(completion_text),
                **{name: getattr(meta, name) for name in _field_names(type(meta))},
                "group_key": None
                if sample is None or (sample.group is None and not group_keys)
                else sample.group_key,
                "step_scores": None if score.steps is None else _json_list(score.steps),
                "step_ends": None if score.step_ends is None else _json_list(score.step_ends),
            }
        )
    return rows


def _json_list(values: Sequence[Any]) -> str:
    """Step scores or ends as the audit keeps them: a JSON list (a non-finite score as null)."""
    return orjson.dumps(list(values)).decode()


_FIELD_NAMES: dict[Any, tuple[str, ...]] = {}


def _field_names(meta_type: Any) -> tuple[str, ...]:
    """The fields of a scorer's meta dataclass (audit columns of the same names), looked up once."""
    names = _FIELD_NAMES.get(meta_type)
    if names is None:
        names = _FIELD_NAMES[meta_type] = tuple(f.name for f in dataclasses.fields(meta_type))
    return names


def sample_hash(item: Any) -> str:
    """Content hash of a sample: sha256 of its canonical JSON (prompt, completion, columns)."""
    if isinstance(item, dict):
        item = {
            "prompt": item.get("prompt"),
            "completion": item.get("completion"),
            "columns": item.get("columns") or {},
        }
    try:
        canonical = orjson.dumps(item, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # nested deeper than orjson encodes (an invalid sample): the standard encoder
        canonical = json.dumps(item, sort_keys=True, default=repr).encode()
    return hashlib.sha256(canonical).hexdigest()


def _sample_id(item: Any) -> str | None:
    """The sample's id for the audit; None when it has none or the store cannot hold it (that sample
    is then an invalid sample, and the others of its chunk are written as usual)."""
    columns = item.get("columns") if isinstance(item, dict) else None
    if not isinstance(columns, dict) or sample_id_problem(columns) is not None:
        return None
    return sample_id_of(columns)
