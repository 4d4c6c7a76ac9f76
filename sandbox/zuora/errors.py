"""Zuora's error bodies and statuses, per API and per minor version (zuora-api.md sections 2 and 4).

Handlers and the backend raise these; the gateway renders them for the API the route belongs to:

- v1 (everything under ``/v1`` except Actions): ``{success:false, processId, reasons:[{code, message}]}``
  with the category-mapped HTTP status when ``Zuora-Version >= 2024-05-20``, else HTTP 200.
- Object Query: ``{reasons:[{code, message}], requestId}`` from ``2025-08-12``; before that the older
  ``{reasons:[{code:"<string>", message}]}``; the status is mapped either way.
- Actions (``/v1/action/*``): per-row results inside a 200; whole-call failures as
  ``{FaultCode, FaultMessage}`` (shape unconfirmed, section 4.2); 401 ``{message}``.
- 429: rate (``RateLimit-*`` headers, body code 70) and concurrency (``Retry-After``, code 50000070).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

WWW_AUTHENTICATE = "Basic realm=Zuora API, ZSession realm=Zuora API, Bearer realm=Zuora API"

# Category -> HTTP status in versions >= 2024-05-20 (section 4.1).
CATEGORY_STATUS: dict[int, int] = {
    10: 403,
    11: 401,
    20: 400,
    21: 400,
    22: 400,
    23: 400,
    27: 400,
    30: 400,
    40: 404,
    45: 405,
    50: 409,
    60: 500,
    61: 500,
    70: 429,
    90: 400,
    99: 500,
}

# 6-digit resource codes the sandbox uses (Zuora's real ones are not published per operation).
RESOURCE_UNKNOWN = 500000
RESOURCE_PERIOD = 531100
RESOURCE_ACCOUNTING_CODE = 530100
RESOURCE_JOURNAL_RUN = 531200
RESOURCE_JOURNAL_ENTRY = 531300
RESOURCE_INVOICE = 590100
RESOURCE_PAYMENT = 590200
RESOURCE_REFUND = 590300
RESOURCE_CREDIT_MEMO = 590400
RESOURCE_DEBIT_MEMO = 590500

CONCURRENCY_MESSAGE = (
    "The total number of concurrent requests has exceeded the limit allowed by the system. "
    "Please resubmit your request later."
)

_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Api(StrEnum):
    """Which error dialect a route speaks."""

    OAUTH = "oauth"
    V1 = "v1"
    ACTIONS = "actions"
    OBJECT_QUERY = "object-query"


@dataclass(frozen=True)
class Version:
    """The effective ``Zuora-Version`` of a request (header, else the tenant default)."""

    raw: str

    @property
    def dated(self) -> bool:
        return bool(_DATED.match(self.raw))

    @property
    def modern(self) -> bool:
        """v1 errors carry mapped HTTP statuses (>= 2024-05-20); numbered versions are legacy."""
        return self.dated and self.raw >= "2024-05-20"

    @property
    def unified_object_query(self) -> bool:
        return self.dated and self.raw >= "2025-08-12"


def process_id() -> str:
    return secrets.token_hex(8).upper()


@dataclass
class Rendered:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class SandboxError(Exception):
    """Base of everything the sandbox turns into an error response."""

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:  # pragma: no cover
        raise NotImplementedError


class ZuoraError(SandboxError):
    """A categorised Zuora error: ``code`` = 6-digit resource code * 100 + 2-digit category."""

    def __init__(self, category: int, message: str, *, resource: int = RESOURCE_UNKNOWN) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.code = resource * 100 + category

    @property
    def status(self) -> int:
        return CATEGORY_STATUS.get(self.category, 400)

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        if api is Api.OBJECT_QUERY:
            if version.unified_object_query:
                body: Any = {
                    "reasons": [{"code": self.code, "message": self.message}],
                    "requestId": request_id,
                }
            else:
                body = {"reasons": [{"code": str(self.code), "message": self.message}]}
            return Rendered(self.status, body)
        if api is Api.ACTIONS:
            return Rendered(
                self.status, {"FaultCode": _fault_code(self.category), "FaultMessage": self.message}
            )
        body = {
            "success": False,
            "processId": process_id(),
            "reasons": [{"code": self.code, "message": self.message}],
        }
        return Rendered(self.status if version.modern else 200, body)


def _fault_code(category: int) -> str:
    return {
        11: "INVALID_SESSION",
        20: "INVALID_VALUE",
        21: "INVALID_FIELD",
        22: "MISSING_REQUIRED_VALUE",
        40: "INVALID_ID",
        50: "LOCK_COMPETITION",
        60: "UNKNOWN_ERROR",
        61: "TEMPORARY_ERROR",
        70: "REQUEST_EXCEEDED_LIMIT",
    }.get(category, "INVALID_VALUE")


def invalid(message: str, *, resource: int = RESOURCE_UNKNOWN) -> ZuoraError:
    return ZuoraError(20, message, resource=resource)


def missing(message: str, *, resource: int = RESOURCE_UNKNOWN) -> ZuoraError:
    return ZuoraError(22, message, resource=resource)


def not_found(message: str, *, resource: int = RESOURCE_UNKNOWN) -> ZuoraError:
    return ZuoraError(40, message, resource=resource)


def rule(message: str, *, resource: int = RESOURCE_UNKNOWN) -> ZuoraError:
    return ZuoraError(30, message, resource=resource)


def bad_query_parameter(message: str) -> ZuoraError:
    """Object Query: invalid filter[]/sort[]/fields[]/expand[]/cursor (category 27, section 4.3)."""
    return ZuoraError(27, message)


class ActionFault(SandboxError):
    """A whole-call failure of an Actions call (bad ZOQL, too many objects) — shape unconfirmed."""

    def __init__(self, fault_code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.fault_code = fault_code
        self.message = message
        self.status = status

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        return Rendered(self.status, {"FaultCode": self.fault_code, "FaultMessage": self.message})


class UnrecognisedFields(SandboxError):
    """Actions with ``rejectUnknownFields=true`` and an unknown field (section 4.2)."""

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        return Rendered(400, {"message": "Error - unrecognised fields"})


class Forbidden(SandboxError):
    """A finance permission failure: flat ``{code, message}`` with 403 (section 4.1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        return Rendered(403, {"code": 50000010, "message": self.message})


class Unauthenticated(SandboxError):
    """Missing, unknown or expired bearer token (section 1.2): the same answer for all three."""

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        return Rendered(401, {"message": "Authentication error"}, {"WWW-Authenticate": WWW_AUTHENTICATE})


class OAuthError(SandboxError):
    """A rejected ``POST /oauth/token`` in the shapes zuora-sdk declares for ``create_token``:
    400 ``CommonErrorResponse`` (``{code, message}``), 401 ``ProxyUnauthorizedResponse``
    (``{message}``). ``error`` is the OAuth error name, kept in the message."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        message = f"{self.error}: {self.description}"
        if self.status == 401:
            return Rendered(401, {"message": message})
        return Rendered(self.status, {"code": 50000020, "message": message})


class RateLimited(SandboxError):
    """A rate-limit 429: ``RateLimit-*`` headers (Remaining 0), body code 70, no Retry-After."""

    def __init__(self, window: str, reset_seconds: int, headers: dict[str, str]) -> None:
        super().__init__(f"rate limit exceeded for the {window}")
        self.window = window
        self.reset_seconds = reset_seconds
        self.headers = headers

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        message = f"API Rate limit exceeded for the {self.window}, retry after {self.reset_seconds} seconds"
        return Rendered(429, {"reasons": [{"code": 70, "message": message}]}, dict(self.headers))


class ConcurrencyLimited(SandboxError):
    """A concurrency 429: ``Retry-After`` and code 50000070 (section 2.2)."""

    def __init__(self, limit_type: str, limit: int, retry_after: int) -> None:
        super().__init__("concurrency limit exceeded")
        self.limit_type = limit_type
        self.limit = limit
        self.retry_after = retry_after

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        headers = {
            "Retry-After": str(self.retry_after),
            "Concurrency-Limit-Type": self.limit_type,
            "Concurrency-Limit-Limit": str(self.limit),
            "Concurrency-Limit-Remaining": "0",
        }
        reason = {"code": 50000070, "message": CONCURRENCY_MESSAGE}
        if api is Api.OBJECT_QUERY:
            return Rendered(429, {"reasons": [reason], "requestId": request_id}, headers)
        return Rendered(429, {"success": False, "processId": process_id(), "reasons": [reason]}, headers)


class IdempotencyConflict(SandboxError):
    """409: the first request with this Idempotency-Key is still in flight (section 3)."""

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        message = "A request with the same Idempotency-Key is in progress; retry later with the same key."
        return Rendered(
            409,
            {
                "success": False,
                "processId": process_id(),
                "reasons": [{"code": 50000050, "message": message}],
            },
        )


class IdempotencyMismatch(SandboxError):
    """422: the Idempotency-Key was first used with another tenant, URL or method (section 3)."""

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        message = "The Idempotency-Key was already used with a different tenant, URL or HTTP method."
        return Rendered(
            422,
            {
                "success": False,
                "processId": process_id(),
                "reasons": [{"code": 50000020, "message": message}],
            },
        )


class ServerFault(SandboxError):
    """An injected 5xx: 500 in the API's own shape (category 60), 502/503/504 as gateway pages."""

    def __init__(self, status: int) -> None:
        super().__init__(f"injected {status}")
        self.status = status

    def render(self, api: Api, version: Version, request_id: str) -> Rendered:
        if self.status == 500:
            inner = ZuoraError(60, "An unexpected error occurred. Please retry the request.")
            rendered = inner.render(api, Version("2025-08-12"), request_id)
            rendered.status = 500
            return rendered
        text = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(
            self.status, "Error"
        )
        return Rendered(self.status, {"message": text})
