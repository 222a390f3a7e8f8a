"""Add each row's group key and, for scores with steps, the step scores and where each step ends.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Reviewed by hand. All three columns are nullable (rows written before this revision have no group key,
and a scalar reward's rows no steps), so the upgrade is a metadata-only change on PostgreSQL; the hash
chain takes them in only where set (``rewardq.storage.chain``), so rows sealed before it stay intact.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("group_key", sa.String(202)),
    ("step_scores", sa.Text()),
    ("step_ends", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
