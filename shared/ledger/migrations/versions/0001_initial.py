"""The ledger's initial schema: connections, stream marks, sync records, close runs, the audit
trail and callout notifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Self-contained on purpose (no imports from shared.ledger.models): a migration describes the
schema as it was at this revision. Timestamps are ``DateTime(timezone=True)`` (timestamptz on
PostgreSQL; naive UTC text on SQLite, which the models' UtcDateTime type normalises).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big_id() -> sa.types.TypeEngine:
    # SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


OPEN_CLOSE_RUN = sa.text("status IN ('running', 'needs_attention')")


def upgrade() -> None:
    op.create_table(
        "connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("zuora_base_url", sa.String(length=255), nullable=False),
        sa.Column("zuora_client_id", sa.String(length=255), nullable=False),
        sa.Column("zuora_entity_id", sa.String(length=64), nullable=True),
        sa.Column("erp_kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connection"),
        sa.UniqueConstraint("name", name="uq_connection_name"),
    )

    op.create_table(
        "stream_mark",
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("mark", _utc(), nullable=True),
        sa.Column("run_started_at", _utc(), nullable=True),
        sa.Column("run_finished_at", _utc(), nullable=True),
        sa.Column("last_status", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("missed_by_mark", sa.Integer(), nullable=False),
        sa.Column("missed_by_push", sa.Integer(), nullable=False),
        sa.Column("pulled_total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "stream", name="pk_stream_mark"),
    )

    op.create_table(
        "close_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("period_name", sa.String(length=64), nullable=False),
        sa.Column("period_id", sa.String(length=64), nullable=True),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("allow_closed", sa.Boolean(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("journal_run_number", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_close_run"),
    )
    op.create_index("ix_close_run_connection_id", "close_run", ["connection", "id"])
    # At most one open run per (connection, period, dry_run), even under concurrent starts.
    op.create_index(
        "uq_close_run_open",
        "close_run",
        ["connection", "period_name", "dry_run"],
        unique=True,
        sqlite_where=OPEN_CLOSE_RUN,
        postgresql_where=OPEN_CLOSE_RUN,
    )

    op.create_table(
        "sync_record",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("zuora_id", sa.String(length=64), nullable=False),
        sa.Column("zuora_number", sa.String(length=128), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("zuora_updated", _utc(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("erp_ref", sa.String(length=128), nullable=True),
        sa.Column("erp_released", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("period_name", sa.String(length=64), nullable=True),
        sa.Column("close_run_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("posted_payload", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("posted_at", _utc(), nullable=True),
        sa.Column("marked_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["close_run_id"], ["close_run.id"], name="fk_sync_record_close_run_id_close_run", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sync_record"),
        sa.UniqueConstraint("connection", "object_type", "zuora_id", name="uq_sync_record_key"),
    )
    op.create_index("ix_sync_record_due", "sync_record", ["connection", "state", "next_attempt_at"])
    op.create_index("ix_sync_record_number", "sync_record", ["connection", "zuora_number"])
    op.create_index("ix_sync_record_erp_ref", "sync_record", ["connection", "erp_ref"])
    op.create_index("ix_sync_record_close_run_id", "sync_record", ["close_run_id"])

    op.create_table(
        "audit_event",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("api", sa.String(length=32), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("request_headers", sa.JSON(), nullable=True),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_event"),
    )
    op.create_index("ix_audit_event_subject_at", "audit_event", ["subject", "at"])
    op.create_index("ix_audit_event_at", "audit_event", ["at"])

    op.create_table(
        "callout_notification",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("notification_id", sa.String(length=128), nullable=False),
        sa.Column("event_code", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=True),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_callout_notification"),
        sa.UniqueConstraint("connection", "notification_id", name="uq_callout_notification_key"),
    )
    op.create_index("ix_callout_notification_state", "callout_notification", ["connection", "state", "received_at"])


def downgrade() -> None:
    op.drop_table("callout_notification")
    op.drop_table("audit_event")
    op.drop_table("sync_record")
    op.drop_table("close_run")
    op.drop_table("stream_mark")
    op.drop_table("connection")
