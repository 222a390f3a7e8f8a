"""Add what model and judge scorers report beyond the value: truncation, cache hits, HTTP attempts,
the replica that answered, token usage and the prompt template's hash.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Reviewed by hand. All columns are nullable (None where a scorer has nothing to say), so rows written
before this revision stay valid and the upgrade is a metadata-only change on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("truncated", sa.Boolean()),
    ("cache_hit", sa.Boolean()),
    ("http_attempts", sa.Integer()),
    ("replica", sa.String(256)),
    ("prompt_tokens", sa.Integer()),
    ("completion_tokens", sa.Integer()),
    ("template_hash", sa.String(64)),
)


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
