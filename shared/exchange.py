"""One HTTP exchange with an external API, as handed to the audit hook.

API clients never touch the ledger: they call an :data:`AuditHook` with an :class:`Exchange`
after every request, and ``shared/ports.py`` wires that hook to the ledger's audit table.
Everything here is redacted before it leaves the client: no secret reaches a hook.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

from shared import jsoncodec

REDACTED = "***"

# Header and body keys whose values are secrets, compared case-insensitively.
SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "set-cookie", "x-zuora-signature", "proxy-authorization"}
)
SECRET_KEYS = frozenset(
    {
        "password",
        "client_secret",
        "access_token",
        "refresh_token",
        "secret",
        "token",
        "apisecretaccesskey",
        "hmacsecret",
        "id_token",
    }
)

# The record an exchange served ("invoice:8ad0..." / "close:12" ...): set by flows.
current_subject: ContextVar[str | None] = ContextVar("ledgerbridge_audit_subject", default=None)


@contextmanager
def audit_subject(subject: str | None) -> Iterator[None]:
    """Attribute every exchange made inside the block to ``subject``."""
    token = current_subject.set(subject)
    try:
        yield
    finally:
        current_subject.reset(token)


@dataclass(frozen=True)
class Exchange:
    api: str
    connection: str
    method: str
    url: str
    status: int | None
    duration_ms: float
    request_headers: Mapping[str, str] = field(default_factory=dict)
    request_body: str | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body: str | None = None
    error: str | None = None
    request_id: str | None = None
    attempt: int = 1
    subject: str | None = None
    at: datetime | None = None  # when it ended (set when the row is written later than that)


AuditHook = Callable[[Exchange], None]

MAX_BODY_CHARS = 20_000


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def _redact_obj(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: (REDACTED if str(k).lower() in SECRET_KEYS else _redact_obj(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact_obj(v) for v in obj]
    return obj


_FORM_RE = re.compile(r"^[\w.\-~%+]+=[^&]*(&[\w.\-~%+]+=[^&]*)*$")


def redact_body(body: str | bytes | None) -> str | None:
    """Redact secret values in a JSON or form-encoded body; truncate very long bodies. Amounts keep
    their exact digits (the product's JSON codec: ``100.50`` stays ``100.50``), so what the audit
    trail shows is what went on the wire."""
    if body is None:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not text:
        return text
    try:
        text = jsoncodec.dumps(_redact_obj(jsoncodec.loads(text)))
    except ValueError:
        if _FORM_RE.match(text):
            pairs = parse_qsl(text, keep_blank_values=True)
            text = urlencode([(k, REDACTED if k.lower() in SECRET_KEYS else v) for k, v in pairs])
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + f"...[{len(text) - MAX_BODY_CHARS} more chars]"
    return text
