"""Callouts from the sandbox tenant: signed HTTP POSTs to a configured URL (zuora-api.md section 12).

When the control plane posts a record (``POST /_sandbox/records/...`` of a posted invoice, a
processed payment or refund, a posted memo) or changes one into that status (``PATCH`` with a new
``Status``), the sandbox sends the callout our documented template describes::

    POST <url>
    Content-Type: application/json
    Zuora-Request-Id: <32 hex, new for every attempt>
    Zuora-Notification-Id: <32 hex, the same for every attempt of one notification>
    X-Amzn-Trace-Id: Root=1-<8 hex>-<24 hex>
    X-Zuora-Timestamp: <Event.Timestamp, tenant offset>
    X-Zuora-Signature: hex(HMAC-SHA256(secret, timestamp + "." + body))

    {"eventCode": "1110", "objectId": "<id>", "accountId": "<account id>"}

with Zuora's delivery rules (section 12.2): only an exact 200 is success; 1xx, 403, 408, 429, 5xx
and connection failures are retried (``max_attempts`` in total, ``retry_interval_seconds`` apart -
Zuora's 30 minutes, shortened for tests); anything else is given up at once. External payments
and refunds fire no callout unless ``external`` is on (section 12.5). ``duplicate_rate`` re-sends
that share of successfully delivered notifications once more (same notification id, new request
id), as Zuora does when a response is lost.

Control plane: ``POST /_sandbox/callouts`` configures and enables, ``GET`` shows the configuration
and every attempt, ``DELETE`` disables; :func:`sender_for` gives in-process access.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import random
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from .backend import SandboxEvent, ZuoraBackend
from .schema import OBJECTS

# Object -> (event code when posted/processed, the status that means it). Refunds: 2410 for a
# payment refund, 2430 for a credit memo refund (section 12.4).
POSTED_EVENT: dict[str, tuple[str, str]] = {
    "Invoice": ("1110", "Posted"),
    "Payment": ("2120", "Processed"),
    "Refund": ("2410", "Processed"),
    "CreditMemo": ("2720", "Posted"),
    "DebitMemo": ("2820", "Posted"),
}
RETRIED = frozenset({403, 408, 429})
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class CalloutConfig:
    url: str
    secret: str
    events: frozenset[str] = frozenset({"1110", "2120", "2410", "2430", "2720", "2820"})
    max_attempts: int = 3
    retry_interval_seconds: float = 1800.0
    duplicate_rate: float = 0.0
    external: bool = False
    timeout_seconds: float = 25.0
    seed: int | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> CalloutConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown callout keys {sorted(unknown)}; known: {sorted(known)}")
        url, secret = body.get("url"), body.get("secret")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        if not isinstance(secret, str) or not secret:
            raise ValueError("secret must be a non-empty string")
        config = cls(url=url, secret=secret)
        changes: dict[str, Any] = {}
        if "events" in body:
            events = body["events"]
            if not isinstance(events, list) or not all(isinstance(e, str | int) for e in events):
                raise ValueError("events must be a list of event codes")
            changes["events"] = frozenset(str(e) for e in events)
        if "max_attempts" in body:
            attempts = body["max_attempts"]
            if (
                isinstance(attempts, bool)
                or not isinstance(attempts, int)
                or not 1 <= attempts <= MAX_ATTEMPTS
            ):
                raise ValueError(f"max_attempts must be 1..{MAX_ATTEMPTS} (Zuora's tenant maximum)")
            changes["max_attempts"] = attempts
        for name in ("retry_interval_seconds", "duplicate_rate", "timeout_seconds"):
            if name in body:
                value = body[name]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{name} must be a non-negative number")
                changes[name] = float(value)
        if changes.get("duplicate_rate", 0.0) > 1:
            raise ValueError("duplicate_rate must be within 0..1")
        if "external" in body:
            if not isinstance(body["external"], bool):
                raise ValueError("external must be a boolean")
            changes["external"] = body["external"]
        if "seed" in body and body["seed"] is not None:
            if isinstance(body["seed"], bool) or not isinstance(body["seed"], int):
                raise ValueError("seed must be an integer")
            changes["seed"] = body["seed"]
        return replace(config, **changes)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["events"] = sorted(self.events)
        data["secret"] = "***"  # noqa: S105 - a redaction, not a password
        return data


@dataclass
class _Delivery:
    notification_id: str
    event_code: str
    object_type: str
    object_id: str
    account_id: str | None
    timestamp: str
    attempt: int = 0
    duplicate: bool = False


@dataclass
class _Attempt:
    notification_id: str
    request_id: str
    event_code: str
    object_id: str
    attempt: int
    status: int | None
    error: str | None
    duplicate: bool
    at: float


@dataclass
class CalloutSender:
    """Watches a backend's events and delivers callouts on a background thread."""

    backend: ZuoraBackend
    config: CalloutConfig | None = None
    attempts: list[_Attempt] = field(default_factory=list)
    _queue: list[tuple[float, int, _Delivery]] = field(default_factory=list)
    _seq: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _in_flight: int = 0

    def __post_init__(self) -> None:
        self.backend.subscribe(self._on_event)

    # -- control ---------------------------------------------------------------------------------

    def configure(self, config: CalloutConfig) -> None:
        with self._cond:
            self.config = config
            self._rng = random.Random(config.seed)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-callouts", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def disable(self) -> None:
        with self._cond:
            self.config = None
            self._queue.clear()
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def history(self) -> list[dict[str, Any]]:
        with self._cond:
            return [asdict(a) for a in self.attempts]

    # -- events ----------------------------------------------------------------------------------

    def _on_event(self, event: SandboxEvent) -> None:
        # Called under the backend's lock: only queue the work, read the record later.
        if self.config is None or event.kind not in ("posted", "changed"):
            return
        if event.object_type not in POSTED_EVENT:
            return
        if event.kind == "changed" and "Status" not in event.details.get("fields", []):
            return
        with self._cond:
            self._seq += 1
            delivery = _Delivery(
                notification_id=uuid.uuid4().hex,
                event_code="",
                object_type=event.object_type,
                object_id=event.object_id,
                account_id=None,
                timestamp=event.at,
            )
            heapq.heappush(self._queue, (time.monotonic(), self._seq, delivery))
            self._cond.notify_all()

    def _resolve(self, delivery: _Delivery, config: CalloutConfig) -> bool:
        """Fill in the event code and account from the record now; False: no callout fires."""
        try:
            row = self.backend.state_record(OBJECTS[delivery.object_type].table, delivery.object_id)
        except KeyError:
            return False
        code, status = POSTED_EVENT[delivery.object_type]
        if row.get("Status") != status:
            return False
        if (
            delivery.object_type in ("Payment", "Refund")
            and row.get("Type") == "External"
            and not config.external
        ):
            return False  # external payments fire no callout (section 12.5)
        if delivery.object_type == "Refund" and row.get("SourceType") == "CreditMemo":
            code = "2430"
        if code not in config.events:
            return False
        delivery.event_code = code
        delivery.account_id = row.get("AccountId")
        return True

    # -- delivery --------------------------------------------------------------------------------

    def _run(self) -> None:
        client = httpx.Client(follow_redirects=False)
        try:
            while True:
                with self._cond:
                    while True:
                        if self.config is not None and self._queue and self._queue[0][0] <= time.monotonic():
                            _, _, delivery = heapq.heappop(self._queue)
                            config = self.config
                            self._in_flight += 1
                            break
                        timeout = max(0.0, self._queue[0][0] - time.monotonic()) if self._queue else 1.0
                        self._cond.wait(timeout=min(timeout, 1.0))
                try:
                    self._deliver(client, delivery, config)
                finally:
                    with self._cond:
                        self._in_flight -= 1
        finally:  # pragma: no cover - daemon thread ends with the process
            client.close()

    def _deliver(self, client: httpx.Client, delivery: _Delivery, config: CalloutConfig) -> None:
        if not delivery.event_code and not self._resolve(delivery, config):
            return
        delivery.attempt += 1
        body = json.dumps(
            {
                "eventCode": delivery.event_code,
                "objectId": delivery.object_id,
                "accountId": delivery.account_id,
            },
            separators=(",", ":"),
        ).encode()
        request_id = uuid.uuid4().hex
        signature = hmac.new(
            config.secret.encode(), delivery.timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "Zuora-Request-Id": request_id,
            "Zuora-Notification-Id": delivery.notification_id,
            "X-Amzn-Trace-Id": f"Root=1-{request_id[:8]}-{request_id[8:32]}",
            "X-Zuora-Timestamp": delivery.timestamp,
            "X-Zuora-Signature": signature,
        }
        status: int | None = None
        error: str | None = None
        try:
            response = client.post(config.url, content=body, headers=headers, timeout=config.timeout_seconds)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self.attempts.append(
                _Attempt(
                    delivery.notification_id,
                    request_id,
                    delivery.event_code,
                    delivery.object_id,
                    delivery.attempt,
                    status,
                    error,
                    delivery.duplicate,
                    time.time(),
                )
            )
            if status == 200:
                if not delivery.duplicate and self._rng.random() < config.duplicate_rate:
                    again = replace(delivery, duplicate=True, attempt=0)
                    self._push(again, 0.05)
                return
            retried = status is None or status < 200 or status in RETRIED or status >= 500
            if retried and delivery.attempt < config.max_attempts:
                self._push(delivery, config.retry_interval_seconds)

    def _push(self, delivery: _Delivery, delay: float) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (time.monotonic() + delay, self._seq, delivery))
        self._cond.notify_all()


_senders: weakref.WeakKeyDictionary[ZuoraBackend, CalloutSender] = weakref.WeakKeyDictionary()
_senders_lock = threading.Lock()


def sender_for(backend: ZuoraBackend) -> CalloutSender:
    """The backend's callout sender (created, disabled, on first use)."""
    with _senders_lock:
        sender = _senders.get(backend)
        if sender is None:
            sender = _senders[backend] = CalloutSender(backend)
        return sender


def callout_router(backend: ZuoraBackend) -> APIRouter:
    """``/_sandbox/callouts``: configure (POST), inspect (GET), disable (DELETE)."""
    router = APIRouter(prefix="/_sandbox", include_in_schema=False)
    sender = sender_for(backend)

    async def configure(request: Request) -> JSONResponse:
        try:
            raw = await request.body()
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            config = CalloutConfig.parse(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        sender.configure(config)
        return JSONResponse({"config": config.public()})

    async def show(request: Request) -> JSONResponse:
        config = sender.config
        return JSONResponse(
            {
                "config": config.public() if config else None,
                "pending": sender.pending(),
                "attempts": sender.history(),
            }
        )

    async def disable(request: Request) -> JSONResponse:
        sender.disable()
        return JSONResponse({"config": None})

    router.add_api_route("/callouts", configure, methods=["POST"])
    router.add_api_route("/callouts", show, methods=["GET"])
    router.add_api_route("/callouts", disable, methods=["DELETE"])
    return router
