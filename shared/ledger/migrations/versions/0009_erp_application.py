"""Applications the ERP gets after their document.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

A payment, refund or credit memo posted while a document it applies to was not in the ERP (parked,
failed, or not synced yet) was created without that application, for good. ``erp_application``
keeps each such application until its target is posted and released, and it is applied then.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "erp_application",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("record_id", BIG_ID, nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("target_ref", sa.String(128), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_erp_application"),
        sa.ForeignKeyConstraint(
            ["record_id"], ["sync_record.id"], name="fk_erp_application_record_id_sync_record",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("record_id", "target_type", "target_id", name="uq_erp_application_key"),
    )
    op.create_index(
        "ix_erp_application_state", "erp_application", ["connection", "state", "next_attempt_at"]
    )
    op.create_index(
        "ix_erp_application_target", "erp_application", ["connection", "target_type", "target_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_erp_application_target", table_name="erp_application")
    op.drop_index("ix_erp_application_state", table_name="erp_application")
    op.drop_table("erp_application")
