"""Links between a document and the documents it applies to in the ERP.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

A payment, refund or credit memo applied in the ERP to an invoice, debit memo, payment or credit
memo (at its creation or later) is one ``record_link`` with both ERP references, so each side's
timeline names the other: a correction is linked to what it corrects.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "record_link",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("source_id", BIG_ID, nullable=False),
        sa.Column("target_id", BIG_ID, nullable=False),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=True),
        sa.Column("target_ref", sa.String(128), nullable=True),
        sa.Column("made", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_record_link"),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sync_record.id"], name="fk_record_link_source_id_sync_record", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["sync_record.id"], name="fk_record_link_target_id_sync_record", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("source_id", "target_id", name="uq_record_link_key"),
    )
    op.create_index("ix_record_link_target", "record_link", ["target_id"])


def downgrade() -> None:
    op.drop_index("ix_record_link_target", table_name="record_link")
    op.drop_table("record_link")
