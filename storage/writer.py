"""The idempotent bulk writer of audit rows: :func:`write_scores`.

Rows are validated first, all of them, so a bad row raises :class:`InvalidScoreRow` before anything
is written. Then one statement per call, in the caller's transaction (never committed here):

- PostgreSQL (psycopg 3): ``INSERT INTO scores (…) SELECT … FROM unnest(%b::text[], …)
  ON CONFLICT (batch_id, sample_index, reward) DO NOTHING``: one round trip, one binary array per
  column that varies and one scalar per column that does not. Measured against COPY into a temporary
  table (no faster, and it needs per-session state), psycopg's pipelined ``executemany`` and
  text-format arrays (both about 35% slower); docs/audit.md.
- SQLite: the DBAPI's ``executemany`` of ``INSERT … ON CONFLICT (batch_id, sample_index, reward)
  DO NOTHING``, one prepared statement stepped per row. Not ``INSERT OR IGNORE``: that would also
  drop rows that break NOT NULL or CHECK constraints, silently.

A row whose ``(batch_id, sample_index, reward)`` is already stored (a redelivered task, a retried
transaction) is skipped by the statement itself, as is a repeat of a key within one call: the first
write wins, and nothing is read first. New rows are written unsealed (``chain_seq`` and
``chain_hash`` NULL): the sealer (:mod:`rewardq.storage.seal`) chains them after they commit, so
writers of one run never wait on each other.

Validation runs column by column over the whole batch with C-speed builtins (about 1 µs a row);
only when that cannot vouch for a batch (a bad row, or rows that leave optional columns out) does it
go row by row, which finds the first bad row and field for the error message.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Connection, Double, Integer, String

from rewardq.storage.models import scores_table
from rewardq.storage.rows import COLUMNS, REQUIRED
from rewardq.wire.schema import STATUSES

_TABLE = scores_table.c


def _pg_type(column: Column[Any]) -> str:
    """The PostgreSQL type a column's values are sent as (binary arrays, ``%b::type[]``)."""
    kind = column.type
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):
        return "int8" if isinstance(kind, BigInteger) else "int4"
    if isinstance(kind, Double):
        return "float8"
    if kind.python_type is datetime:
        return "timestamptz"
    return "text"


def _typed(*kinds: type) -> tuple[str, ...]:
    return tuple(c for c in COLUMNS if isinstance(_TABLE[c].type, kinds))


_PG_TYPES = {c: _pg_type(_TABLE[c]) for c in COLUMNS}
_CONFLICT = "ON CONFLICT (batch_id, sample_index, reward) DO NOTHING"
_COLUMN_LIST = ", ".join(COLUMNS)
_SQLITE_INSERT = f"INSERT INTO scores ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(COLUMNS))}) {_CONFLICT}"

# Validated by type, from the table; status, sample_hash, value and created_at have rules of their own.
_ALLOWED = frozenset(COLUMNS)
_STATUSES = frozenset(STATUSES)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_AT = {c: i for i, c in enumerate(COLUMNS)}
_REQUIRED_AT = tuple((_AT[c], c) for c in REQUIRED)
# Each string column with its length limit (None: text, no limit).
_STRINGS_AT = tuple(
    (_AT[c], c, kind.length or None)
    for c in COLUMNS
    if isinstance(kind := _TABLE[c].type, String) and c != "status"
)
_INTS_AT = tuple((_AT[c], c) for c in _typed(Integer))
_NULLABLE_INTS = frozenset(at for at, c in _INTS_AT if _TABLE[c].nullable)
_BOOLS_AT = tuple((_AT[c], c) for c in _typed(Boolean))
_FLOATS_AT = tuple((_AT[c], c) for c in _typed(Double) if c != "value")
_BOOL_OR_NONE = frozenset({bool, type(None)})
_STATUS, _HASH, _VALUE, _CREATED = (_AT[c] for c in ("status", "sample_hash", "value", "created_at"))
_INDEX_AT = _AT["sample_index"]  # never folded into a scalar: unnest needs one array
_ALL_COLUMNS = itemgetter(*COLUMNS)
_STR, _STR_OR_NONE = frozenset({str}), frozenset({str, type(None)})
_FLOAT, _FLOAT_OR_NONE = frozenset({float}), frozenset({float, type(None)})


class InvalidScoreRow(ValueError):
    """Raised when a row given to :func:`write_scores` is malformed; nothing of the call was written."""

    def __init__(self, index: int, field: str, message: str) -> None:
        self.index = index
        self.field = field
        self.message = message
        super().__init__(f"audit row {index}, field '{field}': {message}; nothing was written")


def write_scores(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` into ``scores`` in the caller's transaction, in one statement; returns how many
    were new (all of them unless some key was stored already or repeated).

    Each row maps :data:`COLUMNS` to values (:data:`REQUIRED` ones must be there and not None);
    ``created_at`` must be timezone-aware and defaults to now (UTC); ``value`` is a finite float when
    ``status`` is ``ok`` and None otherwise. A row whose ``(batch_id, sample_index, reward)`` exists
    is skipped. New rows are unsealed until the sealer chains them. Raises :class:`InvalidScoreRow`
    (a ValueError) naming the first bad row and field before writing anything. Does not commit.
    """
    if not rows:
        return 0
    dialect = connection.dialect
    postgres = dialect.name == "postgresql" and dialect.driver == "psycopg"
    if dialect.name != "sqlite" and not postgres:
        raise ValueError(
            "write_scores supports SQLite and PostgreSQL through psycopg 3, "
            f"not {dialect.name}+{dialect.driver}"
        )
    columns = _validated(rows)
    if not postgres:
        stamps = {d: _sqlite_timestamp(d) for d in set(columns[_CREATED])}
        columns[_CREATED] = list(map(stamps.__getitem__, columns[_CREATED]))
    if not postgres:
        params = list(zip(*columns, strict=True))
        return int(connection.exec_driver_sql(_SQLITE_INSERT, params).rowcount)
    # A column with one value in every row (run, batch, reward, scorer, host … in a worker's
    # batch) travels once, as a scalar, instead of as an array: a third less to encode and unnest.
    n = len(columns[0])
    constant = tuple(at != _INDEX_AT and c.count(c[0]) == n for at, c in enumerate(columns))
    scalars = [c[0] for c, one in zip(columns, constant, strict=True) if one]
    arrays = [c for c, one in zip(columns, constant, strict=True) if not one]
    return int(connection.exec_driver_sql(_pg_insert(constant), (*scalars, *arrays)).rowcount)


@functools.cache
def _pg_insert(constant: tuple[bool, ...]) -> str:
    """The INSERT … SELECT … FROM unnest(…) for a batch whose columns marked in ``constant`` are scalars.

    The scalars' placeholders come first in the text (the SELECT list), then the arrays' (unnest).
    """
    types = [_PG_TYPES.get(c, "text") for c in COLUMNS]
    select = ", ".join(
        f"%b::{t}" if one else f"u.{c}" for c, t, one in zip(COLUMNS, types, constant, strict=True)
    )
    varying = [(c, t) for c, t, one in zip(COLUMNS, types, constant, strict=True) if not one]
    unnest = ", ".join(f"%b::{t}[]" for _, t in varying)
    names = ", ".join(c for c, _ in varying)
    return (
        f"INSERT INTO scores ({_COLUMN_LIST}) SELECT {select} FROM unnest({unnest}) AS u({names}) {_CONFLICT}"
    )


def _sqlite_timestamp(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DATETIME reads back (and UTCDateTime tags as UTC).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _validated(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Every row checked; the values as one list per column in COLUMNS order, ``created_at`` filled."""
    columns = _fast_columns(rows)
    if columns is None:
        columns = [list(c) for c in zip(*_checked_rows(rows), strict=True)]
    if None in columns[_CREATED]:
        now = datetime.now(UTC)
        columns[_CREATED] = [now if d is None else d for d in columns[_CREATED]]
    return columns


def _fast_columns(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]] | None:
    """The columns of ``rows`` if whole-column checks prove every row valid, else None (look closer)."""
    try:
        if set(map(len, rows)) != {len(COLUMNS)}:
            return None
        columns = [list(c) for c in zip(*map(_ALL_COLUMNS, rows), strict=True)]
        for at, _ in _REQUIRED_AT:
            if None in columns[at]:
                return None
        for at, name, limit in _STRINGS_AT:
            strings = columns[at]
            types = set(map(type, strings))
            if types != _STR and not (types <= _STR_OR_NONE and name not in REQUIRED):
                return None
            present = strings if types == _STR else filter(None, strings)
            if limit is not None and max(map(len, present), default=0) > limit:
                return None
        hashes = columns[_HASH]
        if not set(columns[_STATUS]) <= _STATUSES or set(map(len, hashes)) != {64}:
            return None
        if not _lower_hex("".join(hashes), 32 * len(hashes)):
            return None
        # ok needs a finite float (an int is converted row by row); any other status, no value.
        for status, value in zip(columns[_STATUS], columns[_VALUE], strict=True):
            if (type(value) is not float or value - value != 0.0) if status == "ok" else value is not None:
                return None
        for at, name in _FLOATS_AT:
            values = columns[at]
            if not set(map(type, values)) <= (_FLOAT if name in REQUIRED else _FLOAT_OR_NONE):
                return None
            if not math.isfinite(sum(v for v in values if v is not None)):
                return None
        for at, _ in _INTS_AT:
            values = columns[at]
            if not set(map(type, values)) <= ({int, type(None)} if at in _NULLABLE_INTS else {int}):
                return None
            if min((v for v in values if v is not None), default=0) < 0:
                return None
        for at, _ in _BOOLS_AT:
            if not set(map(type, columns[at])) <= _BOOL_OR_NONE:
                return None
        for stamp in set(columns[_CREATED]):
            if stamp is not None and not (isinstance(stamp, datetime) and stamp.tzinfo is not None):
                return None
    except (KeyError, TypeError):  # a column left out, a row that is no mapping, an unhashable value
        return None
    return columns


def _lower_hex(digits: str, size: int) -> bool:
    """True if ``digits`` is lowercase hex for ``size`` bytes (or all decimal digits: then look closer)."""
    try:
        return digits.islower() and len(bytes.fromhex(digits)) == size
    except ValueError:
        return False


def _checked_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Check row by row; raise InvalidScoreRow at the first bad one. Returns the rows' values."""
    out: list[list[Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidScoreRow(i, "", f"must be a mapping of column to value, got {type(row).__name__}")
        unknown = row.keys() - _ALLOWED
        if unknown:
            raise InvalidScoreRow(
                i, sorted(unknown)[0], f"not a column of scores (columns: {', '.join(COLUMNS)})"
            )
        values = [row.get(c) for c in COLUMNS]
        for at, name in _REQUIRED_AT:
            if values[at] is None:
                raise InvalidScoreRow(i, name, "is required")
        for at, name, limit in _STRINGS_AT:
            v = values[at]
            if v is not None and type(v) is not str:
                raise InvalidScoreRow(i, name, f"must be a string, got {type(v).__name__}")
            if v is not None and limit is not None and len(v) > limit:
                raise InvalidScoreRow(i, name, f"is {len(v)} characters, longer than {limit}")
        status = values[_STATUS]
        if type(status) is not str or status not in _STATUSES:
            raise InvalidScoreRow(i, "status", f"{status!r} is not one of {', '.join(STATUSES)}")
        if not _SHA256_HEX.fullmatch(str(values[_HASH])):
            raise InvalidScoreRow(i, "sample_hash", "must be 64 lowercase hex digits (a sha256)")
        value = values[_VALUE]
        if status == "ok":
            values[_VALUE] = _finite(i, "value", value, "status 'ok' needs a finite value")
        elif value is not None:
            raise InvalidScoreRow(i, "value", f"must be None when status is {status!r}, got {value!r}")
        for at, name in _FLOATS_AT:
            if values[at] is not None:
                values[at] = _finite(i, name, values[at], "must be a finite number")
        for at, name in _INTS_AT:
            v = values[at]
            if v is not None and (type(v) is not int or v < 0):
                raise InvalidScoreRow(i, name, f"must be a non-negative int, got {v!r}")
        for at, name in _BOOLS_AT:
            v = values[at]
            if v is not None and type(v) is not bool:
                raise InvalidScoreRow(i, name, f"must be a bool or None, got {v!r}")
        created = values[_CREATED]
        if created is not None and not (isinstance(created, datetime) and created.tzinfo is not None):
            raise InvalidScoreRow(i, "created_at", f"must be a timezone-aware datetime, got {created!r}")
        out.append(values)
    return out


def _finite(index: int, field: str, value: Any, message: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidScoreRow(index, field, f"{message}, got {value!r}")
