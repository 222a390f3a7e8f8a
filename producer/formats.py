"""Rollout dumps of RL trainers, mapped onto rewardq's rows: which fields are the prompt, the completion
and the reference, which ones the trainer computed itself.

- ``verl``: ``trainer.rollout_data_dir`` writes ``<step>.jsonl``, one object per sample with ``input``
  (the decoded prompt), ``output`` (the decoded response), ``gts`` (the ground truth), ``score``,
  ``step`` and the reward function's extra infos; a ``uid`` field there (a dump that logs it) is the
  sample's group.
- ``swift``: ms-swift's GRPO ``completions.jsonl`` (``--log_completions true``) holds one *table* per
  line: ``step``, ``prompt``, ``completion``, one column per reward function, ``advantages`` and, when
  logged, ``solution``, ``num_turns``, ``entropy``, each a list; every line is spread into its rows.
- ``trl``: TRL's ``GRPOTrainer`` (``log_completions=True``) writes ``completions/completions_<step>.parquet``
  with ``step``, ``prompt``, ``completion``, one column per reward function, the ``log_extra`` columns
  and ``advantage``.
- ``plain``: rows in rewardq's own shapes (TRL ``prompt``/``completion`` or ms-swift ``messages``).

A format maps *target* fields of the row rewardq scores (``prompt``, ``completion``, ``solution`` …)
from *source* fields of the record; ``--field completion=output`` adds or overrides such a mapping.
The fields a trainer computed (its scores, advantages, step) stay in the output record but are not
sent to the scorers, so the same completion hashes alike whatever a trainer logged next to it. The
trainer's ``step`` (an integer, or digits as ms-swift writes it) is each row's step in the audit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rewardq.wire.errors import InvalidInputError, Problem

FormatName = Literal["auto", "verl", "swift", "trl", "plain"]
FORMAT_NAMES: tuple[FormatName, ...] = ("auto", "verl", "swift", "trl", "plain")


@dataclass(frozen=True)
class RolloutFormat:
    """How one trainer's dump maps onto scored rows."""

    name: str
    fields: Mapping[str, str] = field(default_factory=dict)  # target -> source
    trainer_fields: frozenset[str] = frozenset()  # computed by the trainer: kept, not scored
    columnar: bool = False  # each record is a table of equal-length lists
    step_field: str | None = None  # the training step the trainer wrote beside each sample

    def with_fields(self, overrides: Mapping[str, str]) -> RolloutFormat:
        return replace(self, fields={**self.fields, **overrides})


FORMATS: dict[str, RolloutFormat] = {
    "verl": RolloutFormat(
        "verl",
        {"prompt": "input", "completion": "output", "solution": "gts", "group": "uid"},
        frozenset({"score", "step", "request_id"}),
        step_field="step",
    ),
    "swift": RolloutFormat(
        "swift",
        {},
        frozenset({"step", "advantages", "entropy", "num_turns"}),
        columnar=True,
        step_field="step",
    ),
    "trl": RolloutFormat("trl", {}, frozenset({"step", "advantage"}), step_field="step"),
    "plain": RolloutFormat("plain"),
}


def detect(record: Mapping[str, Any]) -> RolloutFormat:
    """The format a file's first record looks like; ``plain`` when it looks like none of the trainers'."""
    keys = set(record)
    if {"input", "output", "gts"} <= keys and "completion" not in keys:
        return FORMATS["verl"]
    if {"step", "prompt", "completion", "advantages"} <= keys and isinstance(record["step"], list):
        return FORMATS["swift"]
    if {"step", "prompt", "completion", "advantage"} <= keys:
        return FORMATS["trl"]
    return FORMATS["plain"]


def parse_field_maps(specs: Iterable[str]) -> dict[str, str]:
    """``TARGET=SOURCE`` options (``completion=output``) as a mapping; a malformed one is an error."""
    mapping: dict[str, str] = {}
    problems = []
    for spec in specs:
        target, sep, source = spec.partition("=")
        target, source = target.strip(), source.strip()
        if not sep or not target or not source:
            problems.append(
                Problem("--field", f"expected TARGET=SOURCE (e.g. completion=output), got {spec!r}")
            )
        elif target in mapping:
            problems.append(Problem("--field", f"{target!r} is mapped twice"))
        else:
            mapping[target] = source
    if problems:
        raise InvalidInputError(problems)
    return mapping


@dataclass(frozen=True, slots=True)
class Row:
    """One sample of a dump: its line (or Parquet row), the record written back, the row scored, its
    file when the dump is a directory of files, and the training step the trainer wrote beside it."""

    line: int
    record: dict[str, Any]
    row: dict[str, Any]
    file: str | None = None
    step: Any = None  # as written (checked with rewardq.wire.schema.step_problem before sending)


def rows_of(fmt: RolloutFormat, line: int, record: dict[str, Any]) -> Iterator[Row | Problem]:
    """The rows of one record (several for a columnar table), or the problems that stop it."""
    if not fmt.columnar:
        yield _mapped(fmt, line, record)
        return
    lengths = {k: len(v) for k, v in record.items() if isinstance(v, list)}
    not_lists = [k for k in record if k not in lengths]
    if not_lists or len(set(lengths.values())) > 1:
        detail = (
            f"column '{not_lists[0]}' is not a list"
            if not_lists
            else f"columns have different lengths {sorted(set(lengths.values()))}"
        )
        yield Problem("", f"expected an ms-swift completions table of equal-length lists: {detail}", line)
        return
    for i in range(next(iter(lengths.values()), 0)):
        yield _mapped(fmt, line, {k: v[i] for k, v in record.items()})


def _mapped(fmt: RolloutFormat, line: int, record: dict[str, Any]) -> Row | Problem:
    sources = set(fmt.fields.values())
    row = {k: v for k, v in record.items() if k not in fmt.trainer_fields and k not in sources}
    for target, source in fmt.fields.items():
        if source in record:
            row[target] = record[source]
        elif target == "completion":
            return Problem(source, f"missing; the {fmt.name} format reads the completion from it", line)
    step = record.get(fmt.step_field) if fmt.step_field else None
    if isinstance(step, str) and step.isdigit():  # ms-swift logs the step as text
        step = int(step)
    return Row(line, record, row, step=step)
