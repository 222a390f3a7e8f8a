"""Sealing committed audit rows into their run's hash chain, off the write path: :func:`seal_run`.

Writers insert rows unsealed (``chain_seq`` and ``chain_hash`` NULL) and never wait on each other. A
sealer then chains a run's committed, unsealed rows in id order after the run's head
(:mod:`rewardq.storage.chain`) and moves the head, one transaction per pass of at most ``limit`` rows.
The unsealed rows are found through ``ix_scores_unsealed``, a partial index that holds only them.

- **One sealer per run at a time.** A pass locks the run's head row: ``SELECT … FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so a second sealer of the run skips it at once instead of waiting (the
  first seals what it sees; the second's caller comes back later for what was committed since);
  on SQLite ``BEGIN IMMEDIATE``, the database's single writer lock.
- **Writers committing meanwhile.** A pass reads the rows committed when it reads; a row committed
  after that stays unsealed for the next pass and gets a later seq. Nothing is skipped forever: a
  pass looks for every unsealed row of the run, not past a mark.
- **Never sealed twice.** A pass updates only rows still unsealed and checks that it updated every
  row it read, else raises :class:`ChainConflict` and its transaction rolls back.
- **The key.** A run's head records which key seals it (``key_id``); a sealer with another key
  raises :class:`WrongSealKey` and seals nothing, rather than break the chain.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, select, text

from rewardq.storage.chain import GENESIS, canonical, key_id, link
from rewardq.storage.engine import SQLITE_BEGIN_OPTION
from rewardq.storage.models import scores_table
from rewardq.storage.rows import COLUMNS

SEAL_LIMIT = 5000
"""Rows sealed per pass (one transaction) at most."""

_C = scores_table.c
_UNSEALED = select(_C.id, *(_C[c] for c in COLUMNS)).where(_C.chain_seq.is_(None)).order_by(_C.id)
_CREATE_HEAD = text(
    "INSERT INTO run_heads (run_id, seq, head, key_id) VALUES (:run, 0, :genesis, :key_id) "
    "ON CONFLICT (run_id) DO NOTHING"
)
_HEAD = "SELECT seq, head, key_id FROM run_heads WHERE run_id = :run"
_ADVANCE = text("UPDATE run_heads SET seq = :seq, head = :head WHERE run_id = :run")
_PG_SEAL = (
    "UPDATE scores SET chain_seq = u.seq, chain_hash = u.hash "
    "FROM unnest(%b::int8[], %b::int8[], %b::text[]) AS u(id, seq, hash) "
    "WHERE scores.id = u.id AND scores.chain_seq IS NULL"
)
_SQLITE_SEAL = "UPDATE scores SET chain_seq = ?, chain_hash = ? WHERE id = ? AND chain_seq IS NULL"


class WrongSealKey(ValueError):
    """Raised when a sealer's key is not the one its run is sealed with; nothing was sealed."""


class ChainConflict(RuntimeError):
    """Raised when rows a pass read were sealed by someone else before it could; nothing was sealed."""


def unsealed_runs(connection: Connection) -> list[str]:
    """The runs that have rows not sealed yet, sorted."""
    query = select(_C.run_id).where(_C.chain_seq.is_(None)).distinct().order_by(_C.run_id)
    return list(connection.scalars(query))


def seal_run(engine: Engine, run_id: str, key: bytes | None, *, limit: int = SEAL_LIMIT) -> int | None:
    """Seal every committed, unsealed row of ``run_id`` with ``key``, pass after pass; returns how
    many rows were sealed, or None when another sealer held the run (it seals them; ask again later
    for rows committed since)."""
    # The head row is created apart, so that a pass locks a row that exists; and in a transaction of
    # its own whose first statement is the write: on SQLite, a transaction that has read cannot wait
    # for another writer's lock and fails at once ("database is locked").
    with engine.connect() as conn:
        missing = conn.execute(text(_HEAD), {"run": run_id}).first() is None
    if missing:
        with engine.begin() as conn:
            conn.execute(_CREATE_HEAD, {"run": run_id, "genesis": GENESIS, "key_id": key_id(key)})
    sealed = 0
    while True:
        with engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                done = seal_pass(conn, run_id, key, limit)
        if done is None:
            return sealed or None
        sealed += done
        if done < limit:
            return sealed


def seal_pass(connection: Connection, run_id: str, key: bytes | None, limit: int) -> int | None:
    """Seal up to ``limit`` of ``run_id``'s unsealed rows, oldest first, in the caller's transaction
    (on SQLite, begun IMMEDIATE); returns how many, or None when another sealer holds the run (or its
    head row, which :func:`seal_run` creates first, is missing)."""
    ident = key_id(key)
    postgres = connection.dialect.name == "postgresql"
    head = connection.execute(
        text(_HEAD + (" FOR UPDATE SKIP LOCKED" if postgres else "")), {"run": run_id}
    ).first()
    if head is None:
        return None
    seq, previous, sealed_with = int(head[0]), str(head[1]), head[2]
    if sealed_with is not None and sealed_with != ident:
        raise WrongSealKey(
            f"run {run_id!r} is sealed with key id {sealed_with}, this sealer's key id is {ident}"
        )
    rows = connection.execute(_UNSEALED.where(_C.run_id == run_id).limit(limit)).all()
    if not rows:
        return 0
    ids, seqs, hashes = [], [], []
    for row in rows:
        seq, previous = seq + 1, link(previous, canonical(row[1:]), key)
        ids.append(row[0])
        seqs.append(seq)
        hashes.append(previous)
    if postgres:
        updated = connection.exec_driver_sql(_PG_SEAL, (ids, seqs, hashes)).rowcount
    else:
        updated = connection.exec_driver_sql(_SQLITE_SEAL, list(zip(seqs, hashes, ids, strict=True))).rowcount
    if updated != len(rows):
        raise ChainConflict(
            f"run {run_id!r}: {len(rows) - updated} of {len(rows)} rows were sealed meanwhile"
        )
    connection.execute(_ADVANCE, {"run": run_id, "seq": seq, "head": previous})
    return len(rows)
