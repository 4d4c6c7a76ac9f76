"""The Finance console's users, and who did what in the audit trail.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

``console_user`` holds the console's local users (``ledgerbridge user add``): a name, a role
(viewer, preparer, approver, admin), the argon2 hash of the password, whether the user is
disabled, and the failed sign-ins that lock it for a while. ``audit_event.actor`` names the
console user behind an event (a sign-in, a retry, an approval, an evidence download); NULL for
everything the processes do by themselves.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sessions_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_console_user"),
        sa.UniqueConstraint("name", name="uq_console_user_name"),
    )
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("actor")
    op.drop_table("console_user")
