"""The first pass of rescoring a rollout dump (:mod:`rewardq.rescore`): which format it is in, its rows
file by file, and a check of every record, with its line, before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from rewardq.chunking import Extents
from rewardq.formats import FORMATS, FormatName, RolloutFormat, Row, detect, rows_of
from rewardq.rollouts import iter_records, rollout_files
from rewardq.samples import row_group_key, to_samples
from rewardq.wire.errors import InvalidInputError, Problem
from rewardq.wire.schema import step_problem

MAX_LISTED_PROBLEMS = 1000
CHECK_BATCH = 1024  # rows checked at once in the first pass


def resolve_format(
    source: Path, name: FormatName, fields: Mapping[str, str], max_bytes: int
) -> RolloutFormat:
    """The format named, or (``auto``) the one the file's first record looks like, with ``fields`` on top."""
    if name != "auto":
        return FORMATS[name].with_fields(fields)
    for record in iter_records(rollout_files(source)[0], max_record_bytes=max_bytes, problems=[]):
        return detect(record.data).with_fields(fields)
    return FORMATS["plain"].with_fields(fields)


def check_file(
    source: Path,
    fmt: RolloutFormat,
    max_bytes: int,
    *,
    row_steps: bool = True,
    extents: Extents | None = None,
) -> int:
    """First pass: read and check every record (and, with ``row_steps``, the step each carries); return
    how many samples it holds, or raise one :class:`InvalidInputError` listing the problems (at most
    ``MAX_LISTED_PROBLEMS``) by line. ``extents``, where given, is told each row's group."""
    problems: list[Problem] = []
    count = 0
    batch: list[Row] = []
    for item in dump_rows(source, fmt, max_bytes, problems):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        if row_steps and (problem := step_problem(item.step)) is not None:
            problems.append(Problem(fmt.step_field or "step", problem, item.line, file=item.file))
        if extents is not None:
            extents.add(row_group_key(item.row), item.line, item.file)
        if batch and (len(batch) == CHECK_BATCH or batch[-1].file != item.file):
            problems.extend(_check_rows(batch))
            batch = []
        batch.append(item)
        count += 1
    problems.extend(_check_rows(batch))
    if not problems and count == 0:
        problems.append(Problem("", "the file holds no records"))
    if problems:
        listed = sorted(problems[:MAX_LISTED_PROBLEMS], key=lambda p: (p.file or "", p.line or 0))
        if len(problems) > MAX_LISTED_PROBLEMS:
            listed.append(Problem("", f"{len(problems) - MAX_LISTED_PROBLEMS:,} more problems not listed"))
        raise InvalidInputError(listed, source=str(source))
    return count


def _check_rows(rows: list[Row]) -> list[Problem]:
    """The problems of rows of one file (their sizes were checked by the reader)."""
    if not rows:
        return []
    try:
        to_samples([r.row for r in rows], max_record_bytes=None, lines=[r.line for r in rows])
    except InvalidInputError as e:
        return [replace(p, file=rows[0].file) for p in e.problems]
    return []


def dump_rows(
    source: Path, fmt: RolloutFormat, max_bytes: int, problems: list[Problem]
) -> Iterator[Row | Problem]:
    """The rows of a file, or of a directory's files in order (each row and problem naming its file)."""
    if not source.is_dir():
        for record in iter_records(source, max_record_bytes=max_bytes, problems=problems):
            yield from rows_of(fmt, record.line, record.data)
        return
    for path in rollout_files(source):
        found: list[Problem] = []
        for record in iter_records(path, max_record_bytes=max_bytes, problems=found):
            for item in rows_of(fmt, record.line, record.data):
                yield replace(item, file=path.name)
        problems.extend(replace(p, file=path.name) for p in found)
