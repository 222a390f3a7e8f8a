"""Seal each run's score rows into a hash chain: chain_seq and chain_hash on scores, and run_heads.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Reviewed by hand. Rows written before this revision keep NULL chain columns (``rewardq audit verify``
reports them as unchained); the chain starts with the first row written after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("chain_hash", sa.String(64), nullable=True))
    op.create_index("ix_scores_run_id_chain_seq", "scores", ["run_id", "chain_seq"])
    op.create_table(
        "run_heads",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_heads")),
    )


def downgrade() -> None:
    op.drop_table("run_heads")
    op.drop_index("ix_scores_run_id_chain_seq", table_name="scores")
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("chain_hash")
        batch.drop_column("chain_seq")
