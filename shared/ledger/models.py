"""The ledger's tables (SQLModel), portable between SQLite and PostgreSQL.

Conventions: every datetime is timezone-aware UTC (:class:`UtcDateTime`); JSON columns are
``sa.JSON`` and, through the engine's codec (``db.dumps_json``/``db.loads_json``), keep amounts
as ``Decimal`` - never float; enumerations are plain strings whose allowed values are the
``StrEnum`` classes below. The schema is created by the alembic migrations in
``shared/ledger/migrations`` - a test proves they equal this metadata. Only
``shared.ledger.states`` writes ``SyncRecord.state``.
"""

# No ``from __future__ import annotations``: SQLModel reads the annotations at class creation.

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The ledger's own metadata, so tables other packages declare on SQLModel's default metadata
# never leak into our migrations (and the migration-equals-metadata test stays exact).
metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC and UTC is re-attached on load. Naive datetimes are refused: their zone is a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} given to the ledger; pass an aware UTC datetime"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# 64-bit keys for the tables that grow without bound; SQLite only auto-increments a column
# declared exactly INTEGER PRIMARY KEY (which is 64-bit there anyway).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class RecordState(StrEnum):
    PENDING = "pending"
    POSTING = "posting"
    POSTED = "posted"
    MARKED = "marked"
    FAILED = "failed"
    PARKED = "parked"


class ObjectType(StrEnum):
    ACCOUNT = "account"
    INVOICE = "invoice"
    PAYMENT = "payment"
    REFUND = "refund"
    CREDIT_MEMO = "credit_memo"
    DEBIT_MEMO = "debit_memo"
    JOURNAL_ENTRY = "journal_entry"


class RecordSource(StrEnum):
    PULL = "pull"
    PUSH = "push"
    CLOSE = "close"
    REPLAY = "replay"


class CloseStatus(StrEnum):
    RUNNING = "running"
    # Stopped after ``check`` until an approver who did not start the close approves what it will
    # post (the connection's ``approval`` setting); approval runs it again from ``check``.
    AWAITING_APPROVAL = "awaiting_approval"
    DONE = "done"
    NEEDS_ATTENTION = "needs_attention"
    FAILED = "failed"
    DRY_RUN = "dry_run"


# A close run in one of these is not finished: re-enqueueing the close resumes it.
OPEN_CLOSE_STATUSES = (
    CloseStatus.RUNNING.value,
    CloseStatus.AWAITING_APPROVAL.value,
    CloseStatus.NEEDS_ATTENTION.value,
)


class UserRole(StrEnum):
    """A Finance console user's role, lowest first: each role can do what the ones before it can."""

    VIEWER = "viewer"  # reads everything
    PREPARER = "preparer"  # + retries parked and failed records
    APPROVER = "approver"  # + approves or rejects a close awaiting approval
    ADMIN = "admin"  # + everything

    @property
    def rank(self) -> int:
        return list(UserRole).index(self)

    def at_least(self, other: "UserRole") -> bool:
        return self.rank >= other.rank


class AuditKind(StrEnum):
    HTTP = "http"
    TRANSITION = "transition"
    NOTE = "note"


class CalloutState(StrEnum):
    RECEIVED = "received"
    ENQUEUED = "enqueued"
    DONE = "done"
    FAILED = "failed"


class LedgerModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of the ledger's tables (bound to :data:`metadata`)."""


class ConnectionRow(LedgerModel, table=True):
    """A Zuora tenant and its ERP target. ``secrets`` is a Fernet token of a JSON dict
    (see ``shared.ledger.secrets``); ``config`` holds only non-secret settings."""

    __tablename__ = "connection"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    zuora_base_url: str = Field(sa_type=sa.String(255), nullable=False)
    zuora_client_id: str = Field(sa_type=sa.String(255), nullable=False)
    zuora_entity_id: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    erp_kind: str = Field(sa_type=sa.String(16), nullable=False)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    secrets: str = Field(sa_type=sa.Text, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class ErpRefreshToken(LedgerModel, table=True):
    """The newest OAuth refresh token of a connection's ERP: Acumatica rotates it on every use,
    and Redis, which holds the working copy, may lose it (see ``shared.ledger.refresh_tokens``).
    ``token`` is a Fernet token of ``{"refresh_token": ...}``; ``version`` counts the rotations
    stored. Keyed by connection name, with no foreign key: the default connection, built from the
    environment, has no ``connection`` row."""

    __tablename__ = "erp_refresh_token"

    connection: str = Field(sa_type=sa.String(64), primary_key=True)
    token: str = Field(sa_type=sa.Text, nullable=False)
    version: int = Field(default=1, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class StreamMark(LedgerModel, table=True):
    """A pull stream's high-water mark and the bookkeeping of its last run."""

    __tablename__ = "stream_mark"

    connection: str = Field(sa_type=sa.String(64), primary_key=True)
    stream: str = Field(sa_type=sa.String(64), primary_key=True)
    mark: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    run_started_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    run_finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    last_status: str | None = Field(default=None, sa_type=sa.String(32), nullable=True)
    last_error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    missed_by_mark: int = Field(default=0, nullable=False)
    missed_by_push: int = Field(default=0, nullable=False)
    pulled_total: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)


class CloseRun(LedgerModel, table=True):
    """One summary-GL close of one period; ``step`` is where a re-enqueued close resumes.

    At most one open run (status in :data:`OPEN_CLOSE_STATUSES`) per (connection, period_name,
    dry_run): a partial unique index enforces it against concurrent starts.
    """

    __tablename__ = "close_run"
    __table_args__ = (
        sa.Index(
            "uq_close_run_open",
            "connection",
            "period_name",
            "dry_run",
            unique=True,
            sqlite_where=sa.text("status IN ('running', 'awaiting_approval', 'needs_attention')"),
            postgresql_where=sa.text("status IN ('running', 'awaiting_approval', 'needs_attention')"),
        ),
        sa.Index("ix_close_run_connection_id", "connection", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(sa_type=sa.String(64), nullable=False)
    period_name: str = Field(sa_type=sa.String(64), nullable=False)
    period_id: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    step: str = Field(sa_type=sa.String(64), nullable=False)
    status: str = Field(default=CloseStatus.RUNNING.value, sa_type=sa.String(32), nullable=False)
    allow_closed: bool = Field(default=False, nullable=False)
    dry_run: bool = Field(default=False, nullable=False)
    journal_run_number: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


# SQLAlchemy's optimistic-lock counter for SyncRecord (the mapper needs the Column object itself).
_sync_record_version = sa.Column("version", sa.Integer, nullable=False)


class SyncRecord(LedgerModel, table=True):
    """One Zuora record to sync, keyed by (connection, object_type, zuora_id), with its state.

    ``version`` is SQLAlchemy's optimistic-lock counter: an UPDATE from a stale read matches no
    row and fails (``StaleDataError``) instead of silently overwriting another worker's change.
    """

    __tablename__ = "sync_record"
    __mapper_args__ = {"version_id_col": _sync_record_version}
    __table_args__ = (
        sa.UniqueConstraint("connection", "object_type", "zuora_id", name="uq_sync_record_key"),
        sa.Index("ix_sync_record_due", "connection", "state", "next_attempt_at"),
        sa.Index("ix_sync_record_number", "connection", "zuora_number"),
        sa.Index("ix_sync_record_erp_ref", "connection", "erp_ref"),
        sa.Index("ix_sync_record_close_run_id", "close_run_id"),
        sa.Index(
            "ix_sync_record_changed",
            "connection",
            "changed_at",
            sqlite_where=sa.text("changed_at IS NOT NULL"),
            postgresql_where=sa.text("changed_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    connection: str = Field(sa_type=sa.String(64), nullable=False)
    object_type: str = Field(sa_type=sa.String(32), nullable=False)
    zuora_id: str = Field(sa_type=sa.String(64), nullable=False)
    zuora_number: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    account_id: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    zuora_updated: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    state: str = Field(default=RecordState.PENDING.value, sa_type=sa.String(16), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    last_error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    erp_ref: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    erp_released: bool = Field(default=False, nullable=False)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    source: str = Field(sa_type=sa.String(16), nullable=False)
    period_name: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    close_run_id: int | None = Field(
        default=None, foreign_key="close_run.id", ondelete="SET NULL", nullable=True
    )
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    posted_payload: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    version: int = Field(default=1, sa_column=_sync_record_version)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    posted_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    marked_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    # Set while a posting row is held in doubt by a worker that lost the ERP's answer (it is looked
    # up in seconds): from this time a lookup that does not find the document may create it again
    # (before it, the ERP may still be running the lost request). Cleared when it leaves posting.
    recreate_after: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    # A digest of the record's accounting content as last fetched (streams.content_digest).
    content_digest: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    # Set when a posted record is fetched again with other content: the change is looked at next
    # (shared.item_level.changes), which clears it. ``change_note`` says what a person must do
    # about a change that could not be carried to the ERP; None when nothing is left to do.
    changed_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    change_note: str | None = Field(default=None, sa_type=sa.Text, nullable=True)

    @property
    def subject(self) -> str:
        """The audit subject of this record: ``"<object_type>:<zuora_id>"``."""
        return f"{self.object_type}:{self.zuora_id}"


class ApplicationState(StrEnum):
    """Where an application the ERP did not get with its document stands (:class:`ErpApplication`)."""

    WAITING = "waiting"  # for its target to be posted and released in the ERP
    APPLYING = "applying"  # claimed by a worker until ``next_attempt_at``
    APPLIED = "applied"


class ErpApplication(LedgerModel, table=True):
    """An application of a posted payment, refund or credit memo that its ERP document was created
    without (its target was not in the ERP yet: parked, failed, or not synced), applied later
    through :mod:`shared.item_level.applications` once the target is posted and released. One row
    per (document, target); ``amount`` is Zuora's, ``target_ref`` the target's ERP key once
    applied; ``next_attempt_at`` is when a waiting row is looked at again (a failed attempt backs
    off) or when an applying worker's claim ends."""

    __tablename__ = "erp_application"
    __table_args__ = (
        sa.UniqueConstraint("record_id", "target_type", "target_id", name="uq_erp_application_key"),
        sa.Index("ix_erp_application_state", "connection", "state", "next_attempt_at"),
        sa.Index("ix_erp_application_target", "connection", "target_type", "target_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    connection: str = Field(sa_type=sa.String(64), nullable=False)
    record_id: int = Field(sa_type=BigId, foreign_key="sync_record.id", ondelete="CASCADE", nullable=False)
    target_type: str = Field(sa_type=sa.String(32), nullable=False)
    target_id: str = Field(sa_type=sa.String(64), nullable=False)
    amount: str = Field(sa_type=sa.String(40), nullable=False)
    state: str = Field(default=ApplicationState.WAITING.value, sa_type=sa.String(16), nullable=False)
    reason: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    attempts: int = Field(default=0, nullable=False)
    last_error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    target_ref: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    applied_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class RecordLink(LedgerModel, table=True):
    """A payment, refund or credit memo applied in the ERP to the document it pays, refunds or
    corrects (an invoice reversal's or write-off's credit memo, a payment rejection's refund), with
    both ERP references: written when the application is made, at creation or later."""

    __tablename__ = "record_link"
    __table_args__ = (
        sa.UniqueConstraint("source_id", "target_id", name="uq_record_link_key"),
        sa.Index("ix_record_link_target", "target_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    connection: str = Field(sa_type=sa.String(64), nullable=False)
    source_id: int = Field(sa_type=BigId, foreign_key="sync_record.id", ondelete="CASCADE", nullable=False)
    target_id: int = Field(sa_type=BigId, foreign_key="sync_record.id", ondelete="CASCADE", nullable=False)
    amount: str = Field(sa_type=sa.String(40), nullable=False)
    source_ref: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    target_ref: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    # "with the document" (sent in its create) or "later" (applied after both were in the ERP)
    made: str = Field(sa_type=sa.String(32), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class AuditEvent(LedgerModel, table=True):
    """One line of the audit trail: an HTTP exchange (already redacted), a state transition or
    a note, against a subject such as ``invoice:8ad0...`` or ``close:12``."""

    __tablename__ = "audit_event"
    __table_args__ = (
        sa.Index("ix_audit_event_subject_at", "subject", "at"),
        sa.Index("ix_audit_event_at", "at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    connection: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    kind: str = Field(sa_type=sa.String(16), nullable=False)
    subject: str | None = Field(default=None, sa_type=sa.String(200), nullable=True)
    api: str | None = Field(default=None, sa_type=sa.String(32), nullable=True)
    method: str | None = Field(default=None, sa_type=sa.String(16), nullable=True)
    url: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    status: int | None = Field(default=None, nullable=True)
    duration_ms: float | None = Field(default=None, nullable=True)
    request_id: str | None = Field(default=None, sa_type=sa.String(128), nullable=True)
    attempt: int | None = Field(default=None, nullable=True)
    request_headers: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    request_body: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    response_headers: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    response_body: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    message: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    # The console user who did it (sign-in, retry, approval, evidence download); None otherwise.
    actor: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)


class ConsoleUser(LedgerModel, table=True):
    """A Finance console user (``ledgerbridge user add``). Only the argon2 hash of the password is
    stored. ``failed_logins`` counts the wrong passwords since the last sign-in; past a few, sign-in
    is refused until ``locked_until``."""

    __tablename__ = "console_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    role: str = Field(sa_type=sa.String(16), nullable=False)
    password_hash: str = Field(sa_type=sa.Text, nullable=False)
    disabled: bool = Field(default=False, nullable=False)
    failed_logins: int = Field(default=0, nullable=False)
    locked_until: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    last_login_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    password_changed_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    # Sessions issued before this (a sign-out, a new password, a disable) are no longer accepted.
    sessions_after: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class JournalEntryRequest(LedgerModel, table=True):
    """A manual summary journal entry waiting for a second person (connections with approval
    ``all``): the entry as checked, who asked, and how it ended - approved and created in Zuora
    (``zuora_number``), rejected, or failed when it was created (``error``). ``fingerprint`` is the
    entry's content digest, also its Idempotency-Key's."""

    __tablename__ = "journal_entry_request"
    __table_args__ = (sa.Index("ix_journal_entry_request_status", "connection", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(sa_type=sa.String(64), nullable=False)
    status: str = Field(sa_type=sa.String(32), nullable=False)
    entry: dict[str, Any] = Field(sa_type=sa.JSON, nullable=False)
    fingerprint: str = Field(sa_type=sa.String(80), nullable=False)
    requested_by: str = Field(sa_type=sa.String(64), nullable=False)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    decided_by: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    comment: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    zuora_number: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)


class CalloutNotification(LedgerModel, table=True):
    """A Zuora callout received by the web receiver; (connection, notification_id) and (connection,
    digest of the signed timestamp and body) each de-duplicate."""

    __tablename__ = "callout_notification"
    __table_args__ = (
        sa.UniqueConstraint("connection", "notification_id", name="uq_callout_notification_key"),
        sa.UniqueConstraint("connection", "digest", name="uq_callout_notification_digest"),
        sa.Index("ix_callout_notification_state", "connection", "state", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    connection: str = Field(sa_type=sa.String(64), nullable=False)
    notification_id: str = Field(sa_type=sa.String(128), nullable=False)
    # sha256 of what the signature covers (timestamp "." body): a replay under a new id is caught.
    digest: str | None = Field(default=None, sa_type=sa.String(80), nullable=True)
    event_code: str = Field(sa_type=sa.String(64), nullable=False)
    object_type: str | None = Field(default=None, sa_type=sa.String(32), nullable=True)
    object_id: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    account_id: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    state: str = Field(default=CalloutState.RECEIVED.value, sa_type=sa.String(16), nullable=False)
    error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)


class NoticeOutbox(LedgerModel, table=True):
    """A notice for people (Finance), written in the transaction of the change it reports and
    delivered afterwards by ``ledgerbridge.notices.deliver``: at least once, each delivery carrying
    the row's ``id`` so a receiver can drop a resend. ``dedupe_key`` makes the same change recorded
    twice one notice. Undelivered while ``delivered_at`` is NULL; ``next_attempt_at`` is when it is
    due (a delivery in progress holds it a lease into the future), ``attempts`` counts the claims
    and ``last_error`` says why the last one failed."""

    __tablename__ = "notice_outbox"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key", name="uq_notice_outbox_dedupe_key"),
        sa.Index(
            "ix_notice_outbox_due",
            "next_attempt_at",
            sqlite_where=sa.text("delivered_at IS NULL"),
            postgresql_where=sa.text("delivered_at IS NULL"),
        ),
        sa.Index("ix_notice_outbox_connection_id", "connection", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    connection: str = Field(sa_type=sa.String(64), nullable=False)
    subject: str = Field(sa_type=sa.String(200), nullable=False)
    event: str = Field(sa_type=sa.String(64), nullable=False)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    dedupe_key: str = Field(sa_type=sa.String(200), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    attempts: int = Field(default=0, nullable=False)
    last_error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    delivered_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


LEDGER_TABLES = tuple(sorted(metadata.tables))
