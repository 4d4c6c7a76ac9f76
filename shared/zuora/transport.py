"""The one way every Zuora API area talks to Zuora: :meth:`ZuoraTransport.call`.

Per call it adds ``Zuora-Version: 2025-08-12`` (modern status mapping, zuora-api.md section 0), a
``Zuora-Track-Id`` (<= 64 ASCII, no ``:;"'``, section 3), and on POST/PATCH only a deterministic
``Idempotency-Key`` (section 3: Zuora replays the first result for 24 h, so a retried write is
harmless). Per attempt it takes a permit from the fleet-wide token bucket and a concurrency slot,
sends through the OAuth flow, reports every wire exchange (token requests and 401s included) to
the audit hook with secrets redacted, reads the ``RateLimit-*`` / ``Concurrency-Limit-*`` headers
(section 2) and asks :func:`~shared.zuora.retry.decide` whether to repeat.

Waits up to ``max_inline_wait`` seconds are slept here; a longer wait raises
:class:`~shared.errors.RateLimited` (or the failure's own type) so a Celery task can
``retry(countdown=...)`` instead of sleeping. A 429 pauses the bucket for the whole fleet.

Final failures become the typed errors of :mod:`shared.errors` by status and error category
(``code % 100``, section 4). A body with ``"success": false`` is an error even on HTTP 200 (legacy
tenants, section 0). Actions' per-row results (200 arrays) are *not* call failures: the area
reports them row by row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from shared import jsoncodec
from shared.backoff import Jitter, full_jitter
from shared.connections import ZuoraTarget
from shared.coordination.limits import Sleep, ThrottleTimeout
from shared.errors import ApiError, AuthFailed, RateLimited, Rejected, Transient
from shared.exchange import REDACTED, AuditHook, Exchange, current_subject, redact_body, redact_headers
from shared.zuora.auth import CREDENTIAL_VARIABLES, ZuoraOAuth
from shared.zuora.paging import (
    PageFamily,
    PageLimits,
    Pager,
    PageSizeChanged,
    next_page_number,
    page_params,
)
from shared.zuora.retry import Decision, NetworkError, RetryPolicy, decide
from shared.zuora.throttle import Throttle
from shared.zuora.wire import (
    RateLimitSnapshot,
    error_category,
    error_class,
    make_idempotency_key,
    make_track_id,
    parse_rate_limits,
    parse_reasons,
    query_string,
    reports_failure,
)

log = logging.getLogger("ledgerbridge.zuora")

ZUORA_VERSION = "2025-08-12"
USER_AGENT = "ledgerbridge/0.1 (+zuora-client)"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEYED_METHODS = frozenset({"POST", "PATCH"})

Clock = Callable[[], float]
Params = Sequence[tuple[str, str]]
IdempotencyKey = str | Sequence[str]

_attempt: ContextVar[int] = ContextVar("ledgerbridge_zuora_attempt", default=1)


# -- JSON: money stays Decimal on the way in and out (the product's one codec) ---------------------

loads = jsoncodec.loads
dumps = jsoncodec.dumps


# -- the transport --------------------------------------------------------------------------------


@dataclass
class _Attempt:
    response: httpx.Response | None = None
    error: NetworkError | None = None
    exception: httpx.TransportError | None = None


class ZuoraTransport:
    """Owns the process's one ``httpx.Client`` for a connection and runs every call through it."""

    def __init__(
        self,
        target: ZuoraTarget,
        *,
        connection: str,
        auth: ZuoraOAuth,
        throttle: Throttle,
        audit: AuditHook | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        jitter: Jitter = full_jitter,
        max_inline_wait: float = 20.0,
        page_limits: PageLimits | None = None,
    ) -> None:
        self.connection = connection
        self.page_limits = page_limits or PageLimits(connection)
        self._auth = auth
        self._throttle = throttle
        self._audit = audit
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._max_inline_wait = max_inline_wait
        self.rate_limits: RateLimitSnapshot | None = None
        headers = {
            "Zuora-Version": ZUORA_VERSION,
            "Accept": "application/json",
            "Accept-Encoding": "gzip",  # Zuora gzips JSON bodies > 1000 bytes (section 3)
            "User-Agent": USER_AGENT,
        }
        if target.entity_id:
            headers["Zuora-Entity-Ids"] = target.entity_id
        self.http = httpx.Client(
            base_url=target.base_url,
            headers=headers,
            timeout=httpx.Timeout(target.timeout_seconds, connect=min(10.0, target.timeout_seconds)),
            transport=transport,
            follow_redirects=False,
            event_hooks={"response": [self._on_response]},
        )

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: Params = (),
        body: object = None,
        idempotency_key: IdempotencyKey | None = None,
    ) -> Any:
        """Send one logical request, retrying per the policy; return the parsed JSON body
        (``{}`` for an empty one).

        ``path`` is relative to the base URL with path parameters already quoted; ``params`` are
        encoded with ``%20`` for spaces and ``%2B`` for ``+`` (Object Query filters, section 9.2).
        ``operation`` names the call in the Track-Id and, for POST/PATCH without an explicit
        ``idempotency_key``, in the key derived from method, path and body. An explicit key (a
        string or parts such as ``("journal-run", period, *types)``) is hashed with the
        connection. Raises the typed errors of :mod:`shared.errors`.
        """
        method = method.upper()
        url = path + ("?" + query_string(params) if params else "")
        content = None if body is None else dumps(body).encode()
        headers = {"Zuora-Track-Id": make_track_id(self.connection, operation)}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if method in KEYED_METHODS:
            if idempotency_key is None:
                parts: Sequence[str] = (operation, method, path, dumps(body, sort_keys=True))
            else:
                parts = (idempotency_key,) if isinstance(idempotency_key, str) else tuple(idempotency_key)
            headers["Idempotency-Key"] = make_idempotency_key(self.connection, parts)
        elif idempotency_key is not None:
            raise ValueError("Zuora takes an Idempotency-Key on POST and PATCH only (section 3)")
        idempotent = method in IDEMPOTENT_METHODS or "Idempotency-Key" in headers

        attempt = 0
        while True:
            attempt += 1
            request = self.http.build_request(method, url, content=content, headers=headers)
            outcome = self._send(request, attempt)
            response, body_value = outcome.response, None
            category: int | None = None
            token_endpoint = False
            if response is not None:
                token_endpoint = self._auth.is_token_request(response.request)
                body_value = _json_or_none(response)
                if not token_endpoint and response.is_success and not reports_failure(body_value):
                    if body_value is None and response.content.strip():
                        raise Transient(
                            f"{operation}: HTTP {response.status_code} with a body that is not JSON",
                            **self._context(method, request, response),
                        )
                    return {} if body_value is None else body_value
                category = error_category(parse_reasons(body_value))
            decision = decide(
                attempt,
                status=None if response is None else response.status_code,
                headers={} if response is None else response.headers,
                error=outcome.error,
                body_success_false_category=category,
                method=method,
                idempotent=idempotent,
                policy=self._policy,
                jitter=self._jitter,
                now=self._clock(),
            )
            rate_limited = response is not None and (response.status_code == 429 or category == 70)
            if rate_limited and not token_endpoint and decision.wait > 0:
                self._throttle.pause(decision.wait)  # the whole fleet waits, not just this process
            if not decision.retry or decision.wait > self._max_inline_wait:
                raise self._failure(
                    operation=operation,
                    method=method,
                    request=request,
                    outcome=outcome,
                    body=body_value,
                    category=category,
                    decision=decision,
                ) from outcome.exception
            log.warning(
                "zuora %s %s attempt %d failed (%s); retrying in %.2fs [%s]",
                method,
                path,
                attempt,
                decision.reason,
                decision.wait,
                headers["Zuora-Track-Id"],
            )
            self._sleep(decision.wait)

    def call_paged(
        self,
        family: PageFamily,
        wanted: int,
        method: str,
        path: str,
        *,
        operation: str,
        params: Callable[[int], Params],
    ) -> tuple[Any, int]:
        """:meth:`call` with ``params(page size)``, the size capped at what the tenant accepts
        (:class:`~shared.zuora.paging.PageLimits`); a 400 naming the page size is repeated once at
        the smaller limit. Returns the body and the page size that fetched it."""
        size = self.page_limits.size(family, wanted)
        try:
            return self.call(method, path, operation=operation, params=params(size)), size
        except Rejected as exc:
            smaller = self.page_limits.refused(family, size, exc)
            if smaller is None:
                raise
        return self.call(method, path, operation=operation, params=params(smaller)), smaller

    def numbered_pages(
        self, path: str, *, operation: str, page_size: int, what: str
    ) -> Iterator[tuple[int, int | None, Any]]:
        """``(page, next page or None, body)`` of each page of a v1 list (``page``/``pageSize``,
        following ``nextPage``), the page size capped at what the tenant accepts. A page size that
        has to change after the first page raises :class:`~shared.zuora.paging.PageSizeChanged`:
        page numbers count pages of the old size."""
        pager = Pager(what, "1")
        size = page_size
        while not pager.finished:
            page = int(pager.current or 1)
            body, used = self.call_paged(
                "list", size, "GET", path, operation=operation, params=page_params(page)
            )
            if used != size and page > 1:
                raise PageSizeChanged(f"{what}: the page size changed mid-list", api="zuora")
            size = used
            following = next_page_number(body.get("nextPage"), page)
            yield page, following, body
            pager.advance(None if following is None else str(following))

    # -- one attempt ------------------------------------------------------------------------------

    def _send(self, request: httpx.Request, attempt: int) -> _Attempt:
        token = _attempt.set(attempt)
        started = time.perf_counter()
        try:
            with self._throttle.permit(max_wait=self._max_inline_wait):
                response = self.http.send(request, auth=self._auth)
        except ThrottleTimeout as exc:
            raise RateLimited(
                f"the fleet-wide Zuora limit of connection {self.connection} is reached",
                retry_after=max(exc.wait, 1.0),
                api="zuora",
                method=request.method,
                url=str(request.url),
            ) from None
        except httpx.TransportError as exc:
            kind: NetworkError
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                kind = "connect"  # nothing reached Zuora
            elif isinstance(exc, httpx.TimeoutException):
                kind = "timeout"
            else:
                kind = "read"
            self._report_failure(exc, request, kind, started)
            return _Attempt(error=kind, exception=exc)
        finally:
            _attempt.reset(token)
        self._observe(response)
        return _Attempt(response=response)

    def _observe(self, response: httpx.Response) -> None:
        if self._auth.is_token_request(response.request):
            return  # the token endpoint has its own per-IP limits (section 1.1)
        snapshot = parse_rate_limits(response.headers, at=self._clock())
        if snapshot is None:
            return
        self.rate_limits = snapshot
        if snapshot.remaining == 0 and snapshot.reset:
            self._throttle.pause(snapshot.reset)  # the quota is spent until the window resets
        elif snapshot.concurrency_remaining == 0:
            # No headroom left; Zuora refreshes this counter about once a second (section 2.2).
            self._throttle.pause(1.0)

    # -- errors -----------------------------------------------------------------------------------

    def _context(
        self, method: str, request: httpx.Request, response: httpx.Response | None
    ) -> dict[str, Any]:
        context: dict[str, Any] = {"api": "zuora", "method": method, "url": str(request.url)}
        if response is not None:
            context["status"] = response.status_code
            context["request_id"] = response.headers.get("Zuora-Request-Id")
            context["body"] = _redacted_response_body(self._auth, response)
        return context

    def _failure(
        self,
        *,
        operation: str,
        method: str,
        request: httpx.Request,
        outcome: _Attempt,
        body: object,
        category: int | None,
        decision: Decision,
    ) -> ApiError:
        response = outcome.response
        if response is None:
            return Transient(
                f"{operation}: {outcome.error} error talking to Zuora ({decision.reason})",
                **self._context(method, request, None),
            )
        status = response.status_code
        context = self._context(response.request.method, response.request, response)
        if self._auth.is_token_request(response.request):
            if status == 429:
                return RateLimited(
                    "Zuora's token endpoint is rate limited (100/min per IP)",
                    retry_after=decision.wait or self._policy.cap,
                    **context,
                )
            if status >= 500:
                return Transient(f"Zuora's token endpoint failed ({decision.reason})", **context)
            return AuthFailed(
                f"Zuora refused the OAuth client credentials (HTTP {status}); check {CREDENTIAL_VARIABLES}",
                **context,
            )
        reasons = parse_reasons(body)
        if context["request_id"] is None and isinstance(body, Mapping):
            context["request_id"] = body.get("requestId") or body.get("processId")
        cls = error_class(status, category)
        message = f"{operation} failed: HTTP {status}" + (" with success:false" if status < 300 else "")
        if status == 401:
            message += (
                f" after a token refresh; check {CREDENTIAL_VARIABLES} and the OAuth client's permissions"
            )
        if cls is RateLimited:
            return RateLimited(
                message, retry_after=decision.wait or self._policy.cap, reasons=reasons, **context
            )
        return cls(message, reasons=reasons, **context)

    # -- audit ------------------------------------------------------------------------------------

    def _on_response(self, response: httpx.Response) -> None:
        """httpx response hook: runs for every wire exchange, including the token requests and
        401s inside the auth flow, so the audit trail shows each of them."""
        response.read()
        if self._audit is None:
            return
        request = response.request
        try:
            duration_ms = response.elapsed.total_seconds() * 1000
        except RuntimeError:
            duration_ms = 0.0
        self._audit(
            Exchange(
                api="zuora",
                connection=self.connection,
                method=request.method,
                url=str(request.url),
                status=response.status_code,
                duration_ms=duration_ms,
                request_headers=redact_headers(request.headers),
                request_body=redact_body(request.content),
                response_headers=redact_headers(response.headers),
                response_body=_redacted_response_body(self._auth, response),
                request_id=response.headers.get("Zuora-Request-Id"),
                attempt=_attempt.get(),
                subject=current_subject.get(),
            )
        )

    def _report_failure(
        self, exc: httpx.TransportError, fallback: httpx.Request, kind: str, started: float
    ) -> None:
        if self._audit is None:
            return
        try:
            request = exc.request  # may be the token request yielded by the auth flow
        except RuntimeError:
            request = fallback
        self._audit(
            Exchange(
                api="zuora",
                connection=self.connection,
                method=request.method,
                url=str(request.url),
                status=None,
                duration_ms=(time.perf_counter() - started) * 1000,
                request_headers=redact_headers(request.headers),
                request_body=redact_body(request.content),
                error=f"{kind}: {type(exc).__name__}: {exc}",
                attempt=_attempt.get(),
                subject=current_subject.get(),
            )
        )


def required(body: object, key: str, operation: str) -> Any:
    """``body[key]`` of a successful response, or :class:`Rejected` when Zuora left it out."""
    if isinstance(body, Mapping) and body.get(key) not in (None, ""):
        return body[key]
    raise Rejected(f"{operation}: the response has no {key!r}", api="zuora", body=redact_body(dumps(body)))


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content.strip():
        return None
    try:
        return loads(response.content)
    except ValueError:
        return None


_TOKEN_SECRETS = ("access_token", "jti")  # jti is near-identical to the token (section 1.1)


def _redacted_response_body(auth: ZuoraOAuth, response: httpx.Response) -> str | None:
    text = response.text
    if auth.is_token_request(response.request):
        try:
            data = json.loads(text)
        except ValueError:
            return redact_body(text)
        if isinstance(data, dict):
            text = json.dumps({k: (REDACTED if k in _TOKEN_SECRETS else v) for k, v in data.items()})
    return redact_body(text)
