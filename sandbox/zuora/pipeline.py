"""What happens to every API request before and after its handler (Zuora's gateway, sections 2-4).

Order: count -> rate limits (tenant windows; per-IP for /oauth/token) -> injected faults
(``faults.inject``) -> token revocation (``revoke_token_every``) -> bearer token -> concurrency
slot -> Idempotency-Key (POST/PATCH: replay, 409 in flight, 422 mismatch) -> latency -> handler ->
store for idempotent replay -> an injected ``commit_then_drop`` (the connection closed instead of
the answer) -> headers. Only a handler's own answer (success or failure) is stored under an
Idempotency-Key; gateway refusals (429, 401, injected 5xx) are not, so a client retrying with the
same key gets the real result.

Everything here is non-blocking: waits are ``asyncio.sleep`` and backend calls are in-memory.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.dropping import dropped

from .backend import TENANT_ID, ZuoraBackend
from .errors import (
    Api,
    ConcurrencyLimited,
    IdempotencyConflict,
    IdempotencyMismatch,
    RateLimited,
    SandboxError,
    Unauthenticated,
    Version,
    ZuoraError,
)
from .faults import FaultRule, hang, inject
from .handlers import Call, Reply
from .routes import Route

JSON_TYPE = "application/json; charset=utf-8"
_TRACK_FORBIDDEN = set(":;\"'")
# Headers that describe the moment, not the stored response: fresh on every idempotent replay.
_LIVE_HEADERS = ("ratelimit-", "concurrency-limit-", "x-ratelimit-", "zuora-track-id")


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


async def dispatch(backend: ZuoraBackend, route: Route, request: Request) -> Response:
    """Run one API request through the gateway and its handler."""
    gateway = backend.gateway
    config = backend.config
    gateway.count(route.endpoint)
    request_id = str(uuid.uuid4())
    version = Version(request.headers.get("zuora-version") or config.default_version)
    headers: dict[str, str] = {"Zuora-Request-Id": request_id}
    status = 500
    slot: str | None = None
    idempotency_key: str | None = None
    fault: FaultRule | None = None
    try:
        track = request.headers.get("zuora-track-id")
        if track is not None:
            if len(track) > 64 or not track.isascii() or _TRACK_FORBIDDEN & set(track):
                raise ZuoraError(20, "Zuora-Track-Id must be at most 64 US-ASCII characters without : ; \" '")
            headers["Zuora-Track-Id"] = track
        now = backend.now()
        _rate_limit(backend, route, request, headers, now)
        fault, extra_latency = gateway.pick_faults(route.endpoint)
        if fault is not None and not (fault.kind == "timeout" and fault.after):
            await inject(fault, api=route.api, limit_type=route.limit_type, config=config, headers=headers)
        if route.auth:
            if gateway.revoke_due(config.revoke_token_every):
                backend.expire_tokens()  # as an administrator revoking the OAuth client's tokens
            _authenticate(backend, request)
        if route.limit_type is not None:
            limit = config.concurrency_limit(route.limit_type)
            remaining = gateway.acquire(route.limit_type, limit)
            if remaining is None:
                raise ConcurrencyLimited(route.limit_type, limit, config.concurrency_retry_after_seconds)
            slot = route.limit_type
            headers.update(
                {
                    "Concurrency-Limit-Type": route.limit_type,
                    "Concurrency-Limit-Limit": str(limit),
                    "Concurrency-Limit-Remaining": str(remaining),
                }
            )
        body = await _read_body(request)
        if (
            route.api is not Api.OAUTH
            and request.method in ("POST", "PATCH")
            and "idempotency-key" in request.headers
        ):
            key = request.headers["idempotency-key"]
            if not key or len(key) > 255:
                raise ZuoraError(20, "Idempotency-Key must be 1 to 255 characters")
            url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            decision, stored = gateway.begin(
                key,
                method=request.method,
                url=url,
                tenant=TENANT_ID,
                now=now,
                retention=config.idempotency_retention_seconds,
            )
            if decision == "replay" and stored is not None and stored.status is not None:
                status = stored.status
                return Response(stored.body, status, headers={**stored.headers, **_live(headers)})
            if decision == "conflict":
                raise IdempotencyConflict()
            if decision == "mismatch":
                raise IdempotencyMismatch()
            idempotency_key = key
        delay = config.latency_ms + extra_latency
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        call = Call(
            request.method,
            request.url.path,
            route.template,
            dict(request.path_params),
            request.query_params.multi_items(),
            request.headers,
            body,
            str(request.base_url),
            version,
        )
        try:
            reply = route.handler(backend, call)
        except SandboxError as exc:
            rendered = exc.render(route.api, version, request_id)
            reply = Reply(rendered.body, rendered.status, rendered.headers)
        payload = _dump(reply.body)
        status = reply.status
        own = {"Content-Type": JSON_TYPE, "Zuora-Request-Id": request_id, **reply.headers}
        if idempotency_key is not None:
            gateway.finish(idempotency_key, status, own, payload)
            idempotency_key = None
        if fault is not None and fault.kind == "timeout" and fault.after:
            # The work is done (and stored under its Idempotency-Key) but the answer never arrives.
            await hang(fault)
        if 200 <= status < 300 and gateway.pick_fault_after_work(route.endpoint) is not None:
            # The work is done (and stored under its Idempotency-Key); the connection closes unanswered.
            return dropped()
        return Response(payload, status, headers={**headers, **own})
    except SandboxError as exc:
        rendered = exc.render(route.api, version, request_id)
        status = rendered.status
        out = {**headers, **rendered.headers, "Content-Type": JSON_TYPE}
        if isinstance(exc, Unauthenticated):
            out = {k: v for k, v in out.items() if not k.lower().startswith("concurrency-limit-")}
        return Response(_dump(rendered.body), status, headers=out)
    finally:
        if slot is not None:
            gateway.release(slot)
        if idempotency_key is not None:
            gateway.abandon(idempotency_key)
        gateway.count_status(route.endpoint, status)


def _live(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith(_LIVE_HEADERS)}


def _rate_limit(
    backend: ZuoraBackend, route: Route, request: Request, headers: dict[str, str], now: float
) -> None:
    config = backend.config
    if route.api is Api.OAUTH:
        # /oauth/token: 100 requests per minute per IP, X-RateLimit-*-minute headers (section 1.1).
        ip = request.client.host if request.client else "unknown"
        allowed, token_headers = backend.gateway.hit_token_rate(
            now, ip, config.token_requests_per_minute_per_ip
        )
        headers.update(token_headers)
        if not allowed:
            raise RateLimited("minute", max(1, int(60 - now % 60)), {})
        return
    state = backend.gateway.hit_rate(
        now, (config.rate_limit_per_minute, config.rate_limit_per_hour, config.rate_limit_per_day)
    )
    headers.update(state.headers)
    if state.limited_window is not None:
        raise RateLimited(state.limited_window, state.reset_seconds, {})


def _authenticate(backend: ZuoraBackend, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or not backend.authenticate(token.strip()):
        raise Unauthenticated()


async def _read_body(request: Request) -> bytes:
    body = await request.body()
    if body and request.headers.get("content-encoding", "").lower() == "gzip":
        try:
            return gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise ZuoraError(90, "The request body is not valid gzip.") from exc
    return body
