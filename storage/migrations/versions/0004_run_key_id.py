"""Record which key seals each run's hash chain: run_heads.key_id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Reviewed by hand. Nullable: runs begun before this revision have no key id, and ``rewardq audit verify``
checks their rows as before. A metadata-only change on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("run_heads") as batch:
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_heads") as batch:
        batch.drop_column("key_id")
