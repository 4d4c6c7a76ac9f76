"""The sandbox's failures, shaped like the real server's (acumatica-api.md sections 3.3, 4, 5.1).

Every failure is an ``ApiFailure`` carrying a status, a body (JSON or plain text) and headers;
the app renders it as is (``render_failure``). The factories below build the bodies the API
notes record, so a handler never improvises an error shape.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

# A stack trace fragment: real 500 bodies carry one, and clients must not choke on it.
_STACK = (
    "   at PX.Api.ContractBased.EntityService.Execute(...)\r\n   at PX.Api.ContractBased.WebApi.Controller..."
)

# Text of the licence decline (section 5.2): no JSON, no Retry-After header.
DECLINED_TEXT = (
    "The request has been declined: the maximum number of concurrent API requests or API requests "
    "per minute allowed by the license has been exceeded."
)


class ApiFailure(Exception):
    """An HTTP answer other than success: status, body and headers exactly as sent."""

    def __init__(
        self,
        status: int,
        body: Any,
        *,
        text: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status}: {body if text else json.dumps(body)[:300]}")
        self.status = status
        self.body = body
        self.text = text
        self.headers = dict(headers or {})


def http_error(
    status: int,
    exception_message: str | None = None,
    *,
    exception_type: str = "PX.Data.PXException",
    message: str = "An error has occurred.",
) -> ApiFailure:
    """The ASP.NET Web API ``HttpError`` body (section 5.1)."""
    body: dict[str, Any] = {"message": message}
    if exception_message is not None:
        body["exceptionMessage"] = exception_message
        body["exceptionType"] = exception_type
        body["stackTrace"] = _STACK
    return ApiFailure(status, body)


def bare_message(status: int, message: str) -> ApiFailure:
    """An ``HttpError`` holding only ``message`` (401, 404, 412)."""
    return ApiFailure(status, {"message": message})


def no_entity() -> ApiFailure:
    """A missing record by key or id is a 500, not a 404 (section 4.2, pitfall 11)."""
    return http_error(
        500,
        "No entity satisfies the condition.",
        exception_type="PX.Api.ContractBased.NoEntitySatisfiesTheConditionException",
    )


def key_not_found() -> ApiFailure:
    """An unknown name in ``$select``/``$expand`` (section 3.1, integrator S5)."""
    return http_error(
        500,
        "The given key was not present in the dictionary.",
        exception_type="System.Collections.Generic.KeyNotFoundException",
    )


def odata_error(text: str) -> ApiFailure:
    """A ``$filter`` the OData parser rejects: bad syntax, quoted booleans, unknown names (section 4.2)."""
    return http_error(500, text, exception_type="Microsoft.Data.OData.ODataException")


def model_state(errors: dict[str, list[str]]) -> ApiFailure:
    """An unwrapped or unconvertible field: 400 with ``modelState`` (section 3.3)."""
    return ApiFailure(400, {"message": "The request is invalid.", "modelState": errors})


def not_signed_in() -> ApiFailure:
    """No session, an idle-expired session or an expired token (section 2.1)."""
    return bare_message(401, "You are not signed in to the system.")


def no_resource(url: str) -> ApiFailure:
    """A wrong endpoint name or version, an unknown entity or action (section 1.3)."""
    return bare_message(404, f"No HTTP resource was found that matches the request URI '{url}'.")


def precondition_failed(exists: bool) -> ApiFailure:
    """``If-None-Match: *`` on an existing record, ``If-Match: *`` on a missing one (section 4.1)."""
    text = "The record already exists." if exists else "The record does not exist."
    return http_error(412, text, exception_type="PX.Api.ContractBased.PreconditionFailedException")


def undefined_company() -> ApiFailure:
    """A tenant (``tenant``/``company``) the instance does not have (section 2.1)."""
    return http_error(
        500,
        "A proper company ID cannot be determined for the request.",
        exception_type="PX.Data.PXUndefinedCompanyException",
    )


def login_limit() -> ApiFailure:
    """Sign-in beyond the API-user cap (sections 2.1, 5.2)."""
    return http_error(
        429,
        "API Login Limit",
        exception_type="PX.Data.PXException",
        message="API Login Limit",
    )


def declined() -> ApiFailure:
    """A request the licence queue declined (section 5.2): plain text, no Retry-After."""
    return ApiFailure(429, DECLINED_TEXT, text=True)


def lock_violation(table: str) -> ApiFailure:
    """A concurrent edit (section 5.1)."""
    return http_error(
        500,
        f"Another process has updated the '{table}' record. Your changes will be lost.",
        exception_type="PX.Data.PXLockViolationException",
    )


def render_failure(failure: ApiFailure) -> Response:
    """An ``ApiFailure`` as the response the real server sends."""
    if failure.text:
        return Response(
            str(failure.body),
            status_code=failure.status,
            media_type="text/plain; charset=utf-8",
            headers=failure.headers,
        )
    return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)


class RecordInvalid(ApiFailure):
    """Business validation failed: 422 whose body is the record with ``error`` fields (section 3.3)."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(422, record)


class ActionFailed(Exception):
    """A long-running action (release) failed; the status poll reports ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
