"""Zuora callouts: signature check, de-duplication, event -> object type (zuora-api.md section 12).

Our documented callout template (Zuora Notifications, one callout per event below):

* ``POST https://<host>/zuora/callouts``, ``Content-Type: application/json``, custom body
  ``{"eventCode": "1110", "objectId": "<Invoice.ID>", "accountId": "<Account.ID>"}``
  (``<Payment.ID>``, ``<Refund.ID>``, ``<CreditMemo.ID>``, ``<DebitMemo.ID>`` for the others);
* custom header ``X-Zuora-Timestamp: <Event.Timestamp>``;
* HMAC ``SHA-256``, output ``HEX``, ``hmacData = {{Request.Headers.X-Zuora-Timestamp}}.{{Request.Body}}``,
  ``hmacKey = X-Zuora-Signature``, ``hmacValue = {{Request.HMAC.Signed}}``, with the
  connection's own secret (section 12.3 "recommended deployment"): each stored connection has its
  own (``ledgerbridge connection callout-secret``), the default one
  ``LEDGERBRIDGE_CALLOUT_HMAC_SECRET``; during a rotation the previous secret is accepted too.

:func:`receive` decides everything about one delivery, in this order: a body over ``max_body``
bytes is refused (413); the signature is checked in constant time over the *raw* bytes before
anything is parsed (missing or wrong: 401); the timestamp must be within ``max_age`` - days, not
minutes, because Zuora retries a failed delivery up to 5 times up to a day apart with the same
body (section 12.2); the body must be our template with a known event code (otherwise 400). The
notification is then recorded in the ledger, de-duplicated on ``Zuora-Notification-Id`` (stable
across Zuora's retries) *and* on the digest of what the signature covers (the timestamp and the
body: the notification id is not signed, so a captured delivery replayed under fresh ids within
the accepted age is the same delivery); a duplicate gets 200 and nothing else. Only after that
commit is a task enqueued. A ledger that cannot be written answers 503, which
Zuora retries; an enqueue that fails is left to the sweep (the row stays ``received``) and still
answers 200, because the notification is safe in the ledger.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from secrets import token_urlsafe
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from shared.connections import Connection
from shared.ledger.errors import LedgerError
from shared.ledger.models import CalloutNotification, CalloutState, ObjectType
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox

log = logging.getLogger("ledgerbridge.callouts")

SIGNATURE_HEADER = "X-Zuora-Signature"
TIMESTAMP_HEADER = "X-Zuora-Timestamp"
NOTIFICATION_HEADER = "Zuora-Notification-Id"
REQUEST_ID_HEADER = "Zuora-Request-Id"

# Event category codes (section 12.4) -> the object the callout's objectId names.
EVENTS: dict[str, str] = {
    "1110": ObjectType.INVOICE.value,  # Invoice Posted
    "2120": ObjectType.PAYMENT.value,  # Payment Processed (electronic, or "External Payment Processed")
    "2410": ObjectType.REFUND.value,  # Payment Refund Processed
    "2430": ObjectType.REFUND.value,  # Credit Memo Refund Processed
    "2710": ObjectType.CREDIT_MEMO.value,  # Credit Memo Created: accepted, the re-fetch checks the status
    "2720": ObjectType.CREDIT_MEMO.value,  # Credit Memo Posted
    "2820": ObjectType.DEBIT_MEMO.value,  # Debit Memo Posted
}

DEFAULT_MAX_AGE = timedelta(days=7)
# Our template's body is ~120 bytes; anything near this is not a Zuora callout of ours.
DEFAULT_MAX_BODY = 64 * 1024
# A naive <Event.Timestamp> is in the tenant's time zone (section 12.1): up to 14 h off UTC.
DEFAULT_MAX_FUTURE = timedelta(days=1)
MAX_ID_LENGTH = 64


class CalloutRejected(Exception):
    """A delivery refused before anything was recorded; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Callout:
    """A verified, parsed callout."""

    event_code: str
    object_type: str
    object_id: str
    account_id: str | None


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to one delivery."""

    status: int
    body: dict[str, Any]
    callout_id: int | None = None
    enqueued: bool = False


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp + "." + body`` (what Zuora puts in the signature header)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secrets: str | Sequence[str], timestamp: str | None, body: bytes, signature: str | None
) -> None:
    """Raise :class:`CalloutRejected` (401) unless ``signature`` is the HMAC of this delivery
    under one of ``secrets`` (the current one, and the previous one during a rotation). Every
    secret is compared, each in constant time; hex is case-insensitive."""
    if not timestamp or not signature:
        raise CalloutRejected(401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    given = signature.strip().lower().encode()
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    matches = [hmac.compare_digest(sign(key, timestamp, body).encode(), given) for key in keys if key]
    if not any(matches):
        raise CalloutRejected(401, "bad signature")


def signed_digest(timestamp: str, body: bytes) -> str:
    """``sha256:`` + the hex digest of what the signature covers (``timestamp "." body``)."""
    return "sha256:" + hashlib.sha256(timestamp.encode() + b"." + body).hexdigest()


def parse_timestamp(value: str) -> datetime:
    """``<Event.Timestamp>``: ISO-8601 (with or without an offset; without one it is taken as UTC,
    the window is days wide) or seconds / milliseconds since the epoch."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        seconds = number / 1000.0 if number > 1e11 else number
        return datetime.fromtimestamp(seconds, UTC)
    if len(text) >= 19 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def check_timestamp(
    value: str,
    now: datetime,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
) -> datetime:
    """The signed timestamp, if it is neither too old nor too far ahead; else 401."""
    try:
        at = parse_timestamp(value)
    except (ValueError, OverflowError, OSError):
        raise CalloutRejected(401, f"unreadable {TIMESTAMP_HEADER}") from None
    if at < now - max_age:
        raise CalloutRejected(401, f"{TIMESTAMP_HEADER} is older than {max_age}")
    if at > now + max_future:
        raise CalloutRejected(401, f"{TIMESTAMP_HEADER} is in the future")
    return at


def _identifier(value: Any, what: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise CalloutRejected(400, f"{what} is missing")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise CalloutRejected(400, f"{what} must be a string")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_LENGTH or not text.isascii() or not text.replace("-", "").isalnum():
        raise CalloutRejected(400, f"{what} is not a Zuora id")
    return text


def parse_body(body: bytes) -> Callout:
    """Our template's JSON body; 400 when it is not JSON, not an object, or names no known event."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise CalloutRejected(400, "the body is not JSON") from None
    except RecursionError:
        # The decoder recurses per nesting level: a body of ~1,000 "[" fits under any size limit.
        raise CalloutRejected(400, "the body is not our template: its JSON is nested too deeply") from None
    if not isinstance(data, Mapping):
        raise CalloutRejected(400, "the body must be a JSON object")
    code = data.get("eventCode")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if not isinstance(code, str) or not code.strip():
        raise CalloutRejected(400, "eventCode is missing")
    code = code.strip()
    object_type = EVENTS.get(code)
    if object_type is None:
        raise CalloutRejected(400, f"unknown eventCode {code!r}; expected one of {', '.join(EVENTS)}")
    object_id = _identifier(data.get("objectId"), "objectId", required=True)
    assert object_id is not None
    account_id = _identifier(data.get("accountId"), "accountId", required=False)
    return Callout(code, object_type, object_id, account_id)


def notification_id(headers: Mapping[str, str], timestamp: str, body: bytes) -> str:
    """``Zuora-Notification-Id`` (the same on every retry of one notification). Without it, a hash
    of the signed timestamp and body, which Zuora's retries repeat byte for byte."""
    given = headers.get(NOTIFICATION_HEADER) or headers.get(NOTIFICATION_HEADER.lower())
    if given and given.strip():
        return given.strip()[:128]
    return signed_digest(timestamp, body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name) or headers.get(name.lower())


def receive(
    *,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    ledger: Ledger,
    connection: str,
    enqueue: Callable[[int], None],
    now: datetime | None = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
    max_body: int = DEFAULT_MAX_BODY,
) -> Answer:
    """Handle one delivery (see the module docstring) and say what to answer. ``secrets`` are
    the connection's callout secrets (the current one first; the previous one during a
    rotation)."""
    now = now or datetime.now(UTC)
    if len(body) > max_body:
        log.warning("callout refused (413): a body of %d bytes", len(body))
        return Answer(413, {"error": f"the body is larger than {max_body} bytes"})
    if not any(secrets):
        # A misconfigured receiver: answer so that Zuora retries once it is fixed.
        log.error("a callout arrived for %s, which has no callout secret", connection)
        return Answer(503, {"error": "callouts are not configured for this connection"})
    timestamp = _header(headers, TIMESTAMP_HEADER)
    try:
        verify_signature(secrets, timestamp, body, _header(headers, SIGNATURE_HEADER))
        assert timestamp is not None
        check_timestamp(timestamp, now, max_age=max_age)
        parsed = parse_body(body)
    except CalloutRejected as exc:
        log.warning("callout refused (%d): %s", exc.status, exc.message)
        return Answer(exc.status, {"error": exc.message})
    notification = notification_id(headers, timestamp, body)
    try:
        row, is_new = ledger.record_callout(
            connection,
            notification,
            parsed.event_code,
            object_type=parsed.object_type,
            object_id=parsed.object_id,
            account_id=parsed.account_id,
            digest=signed_digest(timestamp, body),
        )
    except (SQLAlchemyError, LedgerError, OSError) as exc:
        log.error("could not record callout %s: %s", notification, exc)
        return Answer(503, {"error": "the ledger is unavailable; retry later"})
    assert row.id is not None
    if not is_new:
        return Answer(200, {"success": True, "duplicate": True}, row.id)
    try:
        # Before the enqueue, so a fast task's "done" is never overwritten by "enqueued".
        _set_state_if(ledger, row.id, CalloutState.RECEIVED.value, CalloutState.ENQUEUED.value)
    except (SQLAlchemyError, LedgerError) as exc:
        log.warning("callout %s: its state stays received: %s", notification, exc)
    try:
        enqueue(row.id)
    except Exception as exc:
        # The notification is in the ledger; the sweep enqueues it later. Zuora must not retry.
        log.error("callout %s recorded but not enqueued (the sweep will): %s", notification, exc)
        note_enqueue_failure(ledger, [row.id], exc)
        return Answer(200, {"success": True}, row.id)
    return Answer(200, {"success": True}, row.id, enqueued=True)


def note_enqueue_failure(ledger: Ledger, callout_ids: list[int], exc: Exception) -> None:
    """Put callouts whose task could not be enqueued back to ``received`` with the error, for the
    sweep; a ledger that cannot be written is logged, never raised."""
    try:
        ledger.set_callout_states(
            {i: (CalloutState.RECEIVED.value, f"enqueue failed: {exc}") for i in callout_ids}
        )
    except (SQLAlchemyError, LedgerError) as note_error:
        log.error("could not note the enqueue failure: %s", note_error)


def _set_state_if(ledger: Ledger, callout_id: int, expected: str, state: str) -> None:
    """Move a callout row from ``expected`` to ``state``; a row already past it is left alone."""
    with ledger.session() as session:
        session.execute(
            sa.update(CalloutNotification)
            .where(col(CalloutNotification.id) == callout_id, col(CalloutNotification.state) == expected)
            .values(state=state)
            .execution_options(synchronize_session=False)
        )


class CalloutBatcher:
    """Hands recorded callouts on in batches: ``submit`` (the receiver's ``enqueue``) only queues
    the id; a thread calls ``send(connection, ids)`` once ``window`` seconds have passed since the
    first id of a batch, or at once when a connection has ``max_batch`` waiting. One task then
    re-fetches the whole batch with one Object Query per stream instead of one per callout.

    A batch that cannot be sent is put back to ``received`` with the error, for the sweep (Zuora
    has had its 200: the notification is safe in the ledger). An id queued when the process dies
    is in the ledger as ``enqueued``, and the sweep re-drives it too. :meth:`close` sends what is
    queued and stops the thread."""

    def __init__(
        self,
        send: Callable[[str, list[int]], None],
        ledger: Ledger,
        *,
        window: float = 0.1,
        max_batch: int = 50,
    ) -> None:
        if window < 0 or max_batch < 1:
            raise ValueError("window must be >= 0 and max_batch >= 1")
        self._send = send
        self._ledger = ledger
        self.window = window
        self.max_batch = max_batch
        self._pending: dict[str, list[int]] = {}
        self._since: float | None = None  # when the oldest queued id arrived
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, connection: str, callout_id: int) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the callout batcher is closed")
            self._pending.setdefault(connection, []).append(callout_id)
            if self._since is None:
                self._since = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="callout-batcher", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Send everything queued; later ``submit`` calls raise."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._send_all(self._take(everything=True))

    def _take(self, *, everything: bool) -> list[tuple[str, list[int]]]:
        """The batches due now (every batch if ``everything`` or the window has passed; else only
        full ones). Called with the lock held, or after the thread stopped."""
        due = everything or (self._since is not None and time.monotonic() - self._since >= self.window)
        batches: list[tuple[str, list[int]]] = []
        for connection, ids in list(self._pending.items()):
            while len(ids) >= self.max_batch or (due and ids):
                batches.append((connection, ids[: self.max_batch]))
                del ids[: self.max_batch]
            if not ids:
                del self._pending[connection]
        if due or not self._pending:
            self._since = time.monotonic() if self._pending else None
        return batches

    def _run(self) -> None:
        while True:
            with self._cond:
                batches = self._take(everything=False)
                while not batches and not self._closed:
                    timeout = (
                        None
                        if self._since is None
                        else max(0.0, self._since + self.window - time.monotonic())
                    )
                    self._cond.wait(timeout)
                    batches = self._take(everything=False)
                if not batches and self._closed:
                    return
            self._send_all(batches)

    def _send_all(self, batches: list[tuple[str, list[int]]]) -> None:
        for connection, ids in batches:
            try:
                self._send(connection, ids)
            except Exception as exc:
                log.error("%d callout(s) recorded but not enqueued (the sweep will): %s", len(ids), exc)
                note_enqueue_failure(self._ledger, ids, exc)


# -- a stored connection's secrets ------------------------------------------------------------------


def new_callout_secret() -> str:
    """A fresh random secret for a connection's callout template (256 bits)."""
    return token_urlsafe(32)


def rotate_callout_secret(ledger: Ledger, box: SecretBox, name: str, secret: str) -> Connection:
    """Make ``secret`` the stored connection's callout secret, keeping its current one as the
    previous (accepted until :func:`finish_callout_rotation`), so callouts Zuora signs with either
    are taken while the template is changed. Returns the connection as stored."""
    if len(secret) < 16:
        raise ValueError("a callout secret must be at least 16 characters")
    conn = ledger.get_connection(name, box)
    kept = tuple(s for s in conn.callout_secrets[:1] if s != secret)
    updated = dataclasses.replace(conn, callout_secrets=(secret, *kept))
    ledger.add_connection(updated, box, replace=True)
    return updated


def finish_callout_rotation(ledger: Ledger, box: SecretBox, name: str) -> Connection:
    """Stop accepting the stored connection's previous callout secret."""
    conn = ledger.get_connection(name, box)
    updated = dataclasses.replace(conn, callout_secrets=conn.callout_secrets[:1])
    ledger.add_connection(updated, box, replace=True)
    return updated
