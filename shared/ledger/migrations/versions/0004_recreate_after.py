"""A posting row held in doubt knows from when a lookup that finds nothing may recreate it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

A worker whose create went unanswered (a timeout, a dropped connection, a 500) holds the row in
``posting`` and looks it up by natural key seconds later instead of waiting out the posting lease.
A lookup that finds nothing recreates the document only from ``recreate_after`` on: at once when
the ERP answered (it has finished with the request), ``LEDGERBRIDGE_IN_DOUBT_QUIET_SECONDS`` later
when no answer came (it may still be running it). NULL for every other row, and for rows whose
worker died (their lease ran out, which is their quiet period).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_record") as batch:
        batch.add_column(sa.Column("recreate_after", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_record") as batch:
        batch.drop_column("recreate_after")
