"""The audit store's tables as typed SQLAlchemy models: one row in ``scores`` per score a worker computed.

The migration in ``migrations/versions`` creates exactly these tables (a test diffs the two); change both
together, in a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from rewardq.wire.groups import MAX_GROUP_NAME
from rewardq.wire.schema import MAX_BATCH_ID, MAX_REWARD_NAME, MAX_RUN_ID, MAX_SAMPLE_ID, STATUSES

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Longest value of each bounded text column; the writer checks them so that SQLite (which ignores
# VARCHAR lengths) and PostgreSQL (which enforces them) accept and refuse the same rows.
MAX_LENGTHS: dict[str, int] = {
    "run_id": MAX_RUN_ID,
    "batch_id": MAX_BATCH_ID,
    "sample_hash": 64,
    "sample_id": MAX_SAMPLE_ID,
    "reward": MAX_REWARD_NAME,
    "scorer": 256,
    "status": 16,
    "worker_host": 256,
    "worker_gpu": 128,
    "replica": 256,
    "template_hash": 64,
    "group_key": MAX_GROUP_NAME + 2,  # rewardq.wire.groups.group_key: "g:" + the group, or "p:" + a digest
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, stored in UTC and always read back with ``tzinfo=UTC``.

    PostgreSQL keeps ``timestamptz`` natively; SQLite has no time zones, so values are stored as UTC
    text and get their ``tzinfo`` back on load. Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: audit timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the audit store; its ``metadata`` names constraints by convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _status_check() -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")"


class ScoreRow(Base):
    """One score of one sample by one reward, with what is needed to answer for it later.

    ``(batch_id, sample_index, reward)`` is unique: a redelivered task writes nothing new.
    ``value`` is set exactly when ``status`` is ``ok``. ``prompt_text``/``completion_text`` are only
    filled when the ``store_text`` setting is on; ``sample_hash`` is always there.
    """

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("batch_id", "sample_index", "reward"),
        CheckConstraint(_status_check(), name="status"),
        Index("ix_scores_run_id_step", "run_id", "step"),
        # The rows the sealer has yet to chain (rewardq.storage.seal), in write order per run: a row
        # leaves it when it is sealed, so it stays small however large the table grows (migration 0005).
        Index(
            "ix_scores_unsealed",
            "run_id",
            "id",
            postgresql_where=text("chain_seq IS NULL"),
            sqlite_where=text("chain_seq IS NULL"),
        ),
        # Equality lookups only; on PostgreSQL a hash index of the 64-character keys is a third of the
        # size of a B-tree and about three times cheaper to insert into (docs/audit.md).
        Index("ix_scores_sample_hash", "sample_hash", postgresql_using="hash"),
        Index(
            "ix_scores_sample_id",
            "sample_id",
            postgresql_where=text("sample_id IS NOT NULL"),
            sqlite_where=text("sample_id IS NOT NULL"),
        ),
    )

    # BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-assigned rowid (64-bit anyway).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(String(MAX_LENGTHS["run_id"]))
    step: Mapped[int | None] = mapped_column(Integer)
    batch_id: Mapped[str] = mapped_column(String(MAX_LENGTHS["batch_id"]))
    sample_index: Mapped[int] = mapped_column(Integer)
    sample_hash: Mapped[str] = mapped_column(String(MAX_LENGTHS["sample_hash"]))
    sample_id: Mapped[str | None] = mapped_column(String(MAX_LENGTHS["sample_id"]))
    reward: Mapped[str] = mapped_column(String(MAX_LENGTHS["reward"]))
    scorer: Mapped[str] = mapped_column(String(MAX_LENGTHS["scorer"]))
    value: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(MAX_LENGTHS["status"]))
    error: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(Integer)
    worker_host: Mapped[str] = mapped_column(String(MAX_LENGTHS["worker_host"]))
    worker_gpu: Mapped[str | None] = mapped_column(String(MAX_LENGTHS["worker_gpu"]))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), server_default=text("CURRENT_TIMESTAMP"), default=lambda: datetime.now(UTC)
    )
    prompt_text: Mapped[str | None] = mapped_column(Text)
    completion_text: Mapped[str | None] = mapped_column(Text)
    # What a scorer reports beyond the value (rewardq.workers.rewards.base.ScoreMeta); None where it
    # does not apply. Added by migration 0002.
    truncated: Mapped[bool | None] = mapped_column(Boolean)
    cache_hit: Mapped[bool | None] = mapped_column(Boolean)
    http_attempts: Mapped[int | None] = mapped_column(Integer)
    replica: Mapped[str | None] = mapped_column(String(MAX_LENGTHS["replica"]))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    template_hash: Mapped[str | None] = mapped_column(String(MAX_LENGTHS["template_hash"]))
    # The run's hash chain (rewardq.storage.chain), NULL until the sealer (rewardq.storage.seal) chains
    # the row after it commits; added by migration 0003.
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    chain_hash: Mapped[str | None] = mapped_column(String(64))
    # The sample's group (rewardq.wire.groups.group_key) and, for a score with steps, each step's score
    # and where it ends in the completion text, as JSON lists; added by migration 0006. They are hashed
    # into the chain only where set (rewardq.storage.chain), so that rows sealed before stay intact.
    group_key: Mapped[str | None] = mapped_column(String(MAX_LENGTHS["group_key"]))
    step_scores: Mapped[str | None] = mapped_column(Text)
    step_ends: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return (
            f"ScoreRow(id={self.id!r}, run_id={self.run_id!r}, step={self.step!r}, "
            f"batch_id={self.batch_id!r}, sample_index={self.sample_index!r}, reward={self.reward!r}, "
            f"value={self.value!r}, status={self.status!r})"
        )


class RunHead(Base):
    """The last link of a run's hash chain: its seq and hash, so that rows cut off the end are missed."""

    __tablename__ = "run_heads"

    run_id: Mapped[str] = mapped_column(String(MAX_LENGTHS["run_id"]), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    head: Mapped[str] = mapped_column(String(64))
    # Which key seals the run (rewardq.storage.chain.key_id), from its first write; added by migration
    # 0004, so None for runs begun before it.
    key_id: Mapped[str | None] = mapped_column(String(16))

    def __repr__(self) -> str:
        return f"RunHead(run_id={self.run_id!r}, seq={self.seq!r}, head={self.head!r})"


scores_table: Table = cast(Table, ScoreRow.__table__)
"""The ``scores`` table, for Core statements."""
