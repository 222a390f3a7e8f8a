"""Create the scores table: one row per score a worker computed.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Reviewed by hand. Matches rewardq.storage.models as of this revision (tests/storage/test_migrate.py
diffs them). Written out in full rather than imported from the models, so that later model changes
cannot change what this revision did.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scores",
        # BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-assigned rowid.
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("sample_hash", sa.String(64), nullable=False),
        sa.Column("sample_id", sa.String(512), nullable=True),
        sa.Column("reward", sa.String(64), nullable=False),
        sa.Column("scorer", sa.String(256), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_host", sa.String(256), nullable=False),
        sa.Column("worker_gpu", sa.String(128), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("prompt_text", sa.Text(), nullable=True),
        sa.Column("completion_text", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scores")),
        sa.UniqueConstraint(
            "batch_id", "sample_index", "reward", name=op.f("uq_scores_batch_id_sample_index_reward")
        ),
        sa.CheckConstraint(
            "status IN ('ok', 'unscorable', 'error', 'timeout')", name=op.f("ck_scores_status")
        ),
    )
    op.create_index("ix_scores_run_id_step", "scores", ["run_id", "step"])
    op.create_index("ix_scores_sample_hash", "scores", ["sample_hash"], postgresql_using="hash")
    op.create_index(
        "ix_scores_sample_id",
        "scores",
        ["sample_id"],
        postgresql_where=sa.text("sample_id IS NOT NULL"),
        sqlite_where=sa.text("sample_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_scores_sample_id", table_name="scores")
    op.drop_index("ix_scores_sample_hash", table_name="scores")
    op.drop_index("ix_scores_run_id_step", table_name="scores")
    op.drop_table("scores")
