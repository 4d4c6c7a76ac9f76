"""Changes in Zuora after a record was posted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``content_digest`` is a digest of what a record says for accounting as last fetched; a posted
record fetched again with another digest gets ``changed_at`` and the change is carried to the ERP
(a billing account's customer, applications made later) or, where it cannot be, described in
``change_note`` for a person.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_record") as batch:
        batch.add_column(sa.Column("content_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("change_note", sa.Text(), nullable=True))
    op.create_index(
        "ix_sync_record_changed",
        "sync_record",
        ["connection", "changed_at"],
        sqlite_where=sa.text("changed_at IS NOT NULL"),
        postgresql_where=sa.text("changed_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_sync_record_changed", table_name="sync_record")
    with op.batch_alter_table("sync_record") as batch:
        batch.drop_column("change_note")
        batch.drop_column("changed_at")
        batch.drop_column("content_digest")
