"""Callouts are also de-duplicated on the digest of what their signature covers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

A delivery's signature covers its timestamp and body, not its ``Zuora-Notification-Id``: a
captured delivery replayed under a fresh id must be recognised as the same delivery, so each row
keeps ``sha256(timestamp + "." + body)`` under a unique constraint per connection. Rows received
before this revision have none (NULLs do not collide).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("callout_notification") as batch:
        batch.add_column(sa.Column("digest", sa.String(80), nullable=True))
        batch.create_unique_constraint("uq_callout_notification_digest", ["connection", "digest"])


def downgrade() -> None:
    with op.batch_alter_table("callout_notification") as batch:
        batch.drop_constraint("uq_callout_notification_digest", type_="unique")
        batch.drop_column("digest")
