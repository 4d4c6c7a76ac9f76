"""The newest OAuth refresh token of each connection's ERP, so it outlives Redis.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-14

Acumatica invalidates a refresh token when it issues the next one; the newest lived only in Redis,
so a Redis restart signed a refresh-token-only deployment out. One row per connection name (no
foreign key: the default connection, built from the environment, has no ``connection`` row), the
token encrypted like the connections' secrets.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erp_refresh_token",
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection", name="pk_erp_refresh_token"),
    )


def downgrade() -> None:
    op.drop_table("erp_refresh_token")
