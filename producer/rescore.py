"""Offline scoring of saved rollouts: read a file, score it through the queue, write records + rewards."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from rewardq.catalog import check_weights
from rewardq.client import RewardClient
from rewardq.errors import InvalidInputError, Problem
from rewardq.results import ScoreResult
from rewardq.rollouts import scan_records, write_records
from rewardq.samples import to_samples


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
) -> ScoreResult:
    """Score every record of ``source``; each output line is the input record plus ``rewards``,
    ``reward`` (the weighted total), ``reward_status`` and, where any, ``reward_errors``.

    Every record is validated (with its line number) before anything is enqueued.
    """
    weights = check_weights(weights, client.known_rewards)  # fail on names before reading a large file
    records, problems = scan_records(source, max_record_bytes=client.settings.max_record_bytes)
    if not records and not problems:
        raise InvalidInputError([Problem("", "the file holds no records")], source=str(source))
    if problems:  # report the fields of the readable records too, in one list
        try:
            to_samples(
                [r.data for r in records],
                max_record_bytes=client.settings.max_record_bytes,
                lines=[r.line for r in records],
            )
        except InvalidInputError as e:
            problems.extend(e.problems)
        problems.sort(key=lambda p: p.line or 0)
        raise InvalidInputError(problems, source=str(source))
    handle = client.submit(
        [r.data for r in records],
        dict(weights),
        run_id=run_id,
        step=step,
        lines=[r.line for r in records],
        source=str(source),
    )
    total = handle.size * len(handle.weights)
    with tqdm(
        total=total, unit="score", desc=f"scoring {source.name}", disable=not progress, dynamic_ncols=True
    ) as bar:
        result = handle.get(
            timeout=client.settings.timeout if timeout is None else timeout, progress=bar.update
        )
    if out is not None:
        write_records(out, ({**r.data, **result.record(i)} for i, r in enumerate(records)))
    return result
