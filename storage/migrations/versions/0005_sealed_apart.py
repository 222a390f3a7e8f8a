"""Rows are sealed after they commit: an index of the unsealed rows replaces the one on (run_id, chain_seq).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Reviewed by hand. Writers now insert rows with NULL chain columns and a sealer chains them later
(``rewardq.storage.seal``); it finds them through ``ix_scores_unsealed``, a partial index on
``(run_id, id) WHERE chain_seq IS NULL`` that holds only the rows not sealed yet. Nothing read
``ix_scores_run_id_chain_seq`` but the sealer's predecessor, so it goes: one index less for every
write and every seal to maintain. Rows of a run written before migration 0003 have no chain fields and
are sealed, at the end of their run's chain, by the first sealer to reach the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNSEALED = sa.text("chain_seq IS NULL")


def upgrade() -> None:
    op.drop_index("ix_scores_run_id_chain_seq", table_name="scores")
    op.create_index(
        "ix_scores_unsealed",
        "scores",
        ["run_id", "id"],
        postgresql_where=_UNSEALED,
        sqlite_where=_UNSEALED,
    )


def downgrade() -> None:
    op.drop_index("ix_scores_unsealed", table_name="scores")
    op.create_index("ix_scores_run_id_chain_seq", "scores", ["run_id", "chain_seq"])
