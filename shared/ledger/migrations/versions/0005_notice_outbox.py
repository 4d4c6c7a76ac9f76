"""Notices for people go through an outbox: written with the change they report, delivered after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

A close that finishes or needs attention records its notice in ``notice_outbox`` in the
transaction that changes the run's status, so a worker killed after that commit no longer loses
the message, and a webhook that is down delays it instead of dropping it. The delivery task
claims each undelivered row, sends it (its ``id`` in the body) and sets ``delivered_at``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notice_outbox",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notice_outbox"),
        sa.UniqueConstraint("dedupe_key", name="uq_notice_outbox_dedupe_key"),
    )
    op.create_index(
        "ix_notice_outbox_due",
        "notice_outbox",
        ["next_attempt_at"],
        sqlite_where=sa.text("delivered_at IS NULL"),
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_index("ix_notice_outbox_connection_id", "notice_outbox", ["connection", "id"])


def downgrade() -> None:
    op.drop_index("ix_notice_outbox_connection_id", table_name="notice_outbox")
    op.drop_index("ix_notice_outbox_due", table_name="notice_outbox")
    op.drop_table("notice_outbox")
