"""Manual journal entries that wait for a second person.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

On a connection with approval ``all``, ``ledgerbridge journal-entry create`` checks the entry and
records it in ``journal_entry_request`` instead of creating it; an approver who did not ask for it
approves (it is created in Zuora then) or rejects it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journal_entry_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("entry", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("zuora_number", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_journal_entry_request"),
    )
    op.create_index(
        "ix_journal_entry_request_status", "journal_entry_request", ["connection", "status", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_journal_entry_request_status", table_name="journal_entry_request")
    op.drop_table("journal_entry_request")
