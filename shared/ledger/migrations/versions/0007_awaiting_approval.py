"""A close run awaiting approval is open: one open run per period still.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Maker-checker adds the close status ``awaiting_approval`` (the close stopped after its check until
an approver decides). Such a run is open like a running one or one that needs attention, so the
partial unique index that allows one open run per (connection, period, dry_run) counts it too.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status IN ('running', 'awaiting_approval', 'needs_attention')"
_OPEN_BEFORE = "status IN ('running', 'needs_attention')"


def _open_run_index(where: str) -> None:
    op.drop_index("uq_close_run_open", table_name="close_run")
    op.create_index(
        "uq_close_run_open",
        "close_run",
        ["connection", "period_name", "dry_run"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    _open_run_index(_OPEN)


def downgrade() -> None:
    _open_run_index(_OPEN_BEFORE)
