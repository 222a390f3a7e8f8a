"""Checking a run's hash chain (:mod:`rewardq.storage.chain`): which rows were edited, deleted,
inserted or reordered since they were written. The reads behind ``rewardq audit verify RUN``.

Rows are walked in ``chain_seq`` order, each row's hash recomputed from its content and the stored
hash before it (so one edit is reported once, not as a broken tail). A row that does not match is
told apart: one that matches after another row's hash was *moved* (reordered); one that matches no
link at all was *edited*. Missing sequence numbers and a head ahead of the last row are *deleted*
rows; a duplicate sequence number or a row past the head, *inserted* ones.

Rows not sealed yet (no ``chain_seq``: committed, not yet chained by the sealer,
:mod:`rewardq.storage.seal`) are listed apart, in ``unsealed``: they are not problems, but nothing
vouches for them until they are sealed.

A key that is not the one the run was sealed with (its head's ``key_id``) is reported as that, once,
and the rows are not walked: with the wrong key every link fails, which says nothing about edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from rewardq.storage.chain import GENESIS, UNKEYED, canonical, key_id, link
from rewardq.storage.models import RunHead, ScoreRow
from rewardq.storage.rows import COLUMNS

_MOVE_SEARCH_LIMIT = 50  # rows checked against every link for a move; past that, "edited or moved"


@dataclass(frozen=True)
class ChainReport:
    """The verdict on one run: how many rows, the head, each problem found (empty: intact) and each
    row not sealed yet."""

    run_id: str
    rows: int
    head_seq: int | None
    head_hash: str | None
    problems: list[str] = field(default_factory=list)
    wrong_key: str | None = None  # why the key given is not the run's; the rows were then not checked
    unsealed: list[str] = field(default_factory=list)  # rows committed, not chained yet: no verdict

    @property
    def intact(self) -> bool:
        return not self.problems and self.wrong_key is None


def verify_run(connection: Connection, run_id: str, key: bytes | None = None) -> ChainReport:
    """Walk ``run_id``'s chain and report every break (``key``: the audit key the rows were sealed with)."""
    table = ScoreRow.__table__
    columns = [table.c[c] for c in COLUMNS]
    query = select(table.c.id, table.c.chain_seq, table.c.chain_hash, *columns).where(
        table.c.run_id == run_id
    )
    rows = [tuple(r) for r in connection.execute(query)]
    head = connection.execute(
        select(RunHead.seq, RunHead.head, RunHead.key_id).where(RunHead.run_id == run_id)
    ).first()
    if head is not None and head[2] is not None and head[2] != key_id(key):
        return ChainReport(run_id, len(rows), int(head[0]), str(head[1]), wrong_key=_wrong_key(head[2], key))
    chained = sorted((r for r in rows if r[1] is not None), key=lambda r: (r[1], r[0]))
    walk = _Walk(chained, key)
    return ChainReport(
        run_id,
        len(rows),
        None if head is None else int(head[0]),
        None if head is None else str(head[1]),
        [*walk.problems, *_head_problems(head, walk.last_seq, walk.last_hash)],
        unsealed=[_describe(r) for r in sorted(rows, key=lambda r: r[0]) if r[1] is None],
    )


class _Walk:
    """One pass over the chained rows in seq order."""

    def __init__(self, chained: list[tuple[Any, ...]], key: bytes | None) -> None:
        self.key = key
        self.problems: list[str] = []
        self.by_hash = {r[2]: r for r in chained}
        self.last_seq = 0
        self.last_hash = GENESIS
        self.searched = 0
        self.moved: set[str] = set()  # hashes of rows reported out of order
        for row in chained:
            self._step(row)

    def _step(self, row: tuple[Any, ...]) -> None:
        seq, stored = int(row[1]), row[2]
        if seq <= self.last_seq:
            owner = next(r for r in self.by_hash.values() if r[1] == seq and r is not row)
            self.problems.append(f"{_describe(row)} repeats seq {seq} of row id {owner[0]}: inserted")
            return
        gap = seq - self.last_seq - 1
        if gap:
            first, last = self.last_seq + 1, seq - 1
            span = f"seq {first}" if gap == 1 else f"seq {first}..{last}"
            self.problems.append(f"{gap} row(s) deleted before {_describe(row)} ({span} missing)")
        content = canonical(row[3:])
        if link(self.last_hash, content, self.key) != stored and not gap:
            problem = self._mismatch(row, content)
            if problem is not None:
                self.problems.append(problem)
        self.last_seq, self.last_hash = seq, stored

    def _mismatch(self, row: tuple[Any, ...], content: bytes) -> str | None:
        """Why ``row`` does not link to the row before it; None when a reported move explains it."""
        self.searched += 1
        if self.searched > _MOVE_SEARCH_LIMIT:
            return f"{_describe(row)} does not match its hash: edited or reordered"
        for previous in [GENESIS, *self.by_hash]:
            if link(previous, content, self.key) == row[2]:
                if previous in self.moved:  # it follows a row that was moved away: in place itself
                    return None
                self.moved.add(row[2])
                after = (
                    "at the start of the run" if previous == GENESIS else _describe(self.by_hash[previous])
                )
                return f"{_describe(row)} is out of order (reordered): it was written after {after}"
        return f"{_describe(row)} was edited: its content no longer matches its hash"


def _wrong_key(sealed: str, key: bytes | None) -> str:
    if sealed == UNKEYED:
        return "the run was sealed without a key (plain SHA-256), but a key was given"
    if key is None:
        return f"the run was sealed with a key (key id {sealed}), but no key was given"
    return (
        f"the key does not match the run's seal (sealed with key id {sealed}, this key's id is {key_id(key)})"
    )


def _head_problems(head: Any, last_seq: int, last_hash: str) -> list[str]:
    if head is None:
        return ["the run's head record is missing (run_heads row deleted)"] if last_seq else []
    seq, digest = int(head[0]), str(head[1])
    if seq > last_seq:
        return [f"the run's last {seq - last_seq} row(s) were deleted (its head is at seq {seq})"]
    if seq < last_seq:
        return [f"rows after the run's head (seq {seq}) were inserted, up to seq {last_seq}"]
    if digest != last_hash:
        return [f"the run's head (seq {seq}) does not match its last row: head or last row edited"]
    return []


def _describe(row: tuple[Any, ...]) -> str:
    values = dict(zip(COLUMNS, row[3:], strict=True))
    return (
        f"row id {row[0]} (seq {row[1]}, batch {values['batch_id']}, sample {values['sample_index']}, "
        f"reward {values['reward']})"
    )
