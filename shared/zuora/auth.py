"""OAuth client credentials for Zuora as an ``httpx.Auth`` flow (zuora-api.md section 1).

The token lives in Redis under ``ledgerbridge:{connection}:zuora:token`` (JSON with
``access_token``, ``expires_at`` and ``refresh_at``, TTL until expiry) so every worker of the fleet shares it.
When fewer than ``refresh_margin`` seconds (default 300, as in Zuora's sample client) remain, one
process refreshes it under a Redis lock; the others wait for the lock, re-read the cache and use
the new token, so N processes make one token request. The token endpoint is limited per IP
(100/min), which is why this matters.

On a 401 from the API the flow deletes the cached token only if it is still the one that failed
(another process may already have replaced it), gets a fresh one and repeats the request once.
A second 401 is returned to the caller, which maps it to :class:`~shared.errors.AuthFailed`.

When the token endpoint answers anything but 200, the flow stops and that response becomes the
result of the send, so the transport applies its usual rules: 429 waits, 5xx backs off, any other
status is an ``AuthFailed`` naming the credential variables.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx
from redis import Redis
from redis.exceptions import LockError

from shared.connections import ZuoraTarget
from shared.coordination.limits import acquire_lock
from shared.coordination.scripts import COMPARE_AND_DELETE
from shared.errors import AuthFailed

log = logging.getLogger("ledgerbridge.zuora.auth")

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
CREDENTIAL_VARIABLES = "LEDGERBRIDGE_ZUORA_CLIENT_ID / LEDGERBRIDGE_ZUORA_CLIENT_SECRET"


Flow = Generator[httpx.Request, httpx.Response, None]


@dataclass(frozen=True)
class CachedToken:
    """``refresh_at`` is ``expires_at`` minus the margin, or minus half the lifetime for tokens
    shorter than twice the margin (a sandbox issuing 60 s tokens must not cost a token per call)."""

    access_token: str
    expires_at: float
    refresh_at: float
    raw: str = ""  # the exact value stored in Redis, for compare-and-delete

    def remaining(self, now: float) -> float:
        return self.expires_at - now


def token_key(connection: str) -> str:
    return f"ledgerbridge:{connection}:zuora:token"


class ZuoraOAuth(httpx.Auth):
    """Bearer-token auth shared by a fleet through Redis. ``token_requests`` counts the token
    requests this process made (for metrics and tests)."""

    requires_response_body = True

    def __init__(
        self,
        target: ZuoraTarget,
        *,
        connection: str,
        redis: Redis[Any],
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 300.0,
        lock_timeout: float | None = None,
        lock_wait: float | None = None,
    ) -> None:
        self._target = target
        self._redis = redis
        self._clock = clock
        self._margin = refresh_margin
        self.key = token_key(connection)
        self._lock_key = self.key + ":lock"
        # The lock outlives one token request (bounded by the HTTP timeout); waiters give up a
        # little later and fall back to fetching on their own rather than failing.
        self._lock_timeout = lock_timeout if lock_timeout is not None else target.timeout_seconds + 5.0
        self._lock_wait = lock_wait if lock_wait is not None else self._lock_timeout + 5.0
        self._discard_script = redis.register_script(
            COMPARE_AND_DELETE
        )  # only if still the token that failed
        self.token_url = httpx.URL(target.base_url.rstrip("/") + TOKEN_PATH)
        self.token_requests = 0
        # This process's copy of the fleet's token: used until it is due for refresh or Zuora
        # refuses it, so a request costs no Redis round trip.
        self._local: CachedToken | None = None

    def is_token_request(self, request: httpx.Request) -> bool:
        return request.method == "POST" and request.url.copy_with(query=None) == self.token_url

    # -- the flow -------------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Flow:
        token = yield from self._usable_token(request, failed=None)
        if token is None:
            return  # the token endpoint's error response is the result
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code != 401:
            return
        # Expired and revoked tokens look the same (section 1.2): refresh once, retry once.
        log.info("zuora answered 401; refreshing the token once")
        self._discard(token)
        token = yield from self._usable_token(request, failed=token.access_token)
        if token is None:
            return
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        yield request

    def _usable_token(
        self, request: httpx.Request, *, failed: str | None
    ) -> Generator[httpx.Request, httpx.Response, CachedToken | None]:
        """A token not yet due for refresh that is not ``failed``; fetches one under the
        lock when needed. None when the token endpoint refused (its response was the last one
        sent into the flow)."""
        local = self._local
        if self._fresh(local, failed):
            return local
        cached = self._load()
        if self._fresh(cached, failed):
            self._local = cached
            return cached
        lock = self._redis.lock(self._lock_key, timeout=self._lock_timeout, sleep=0.05)
        have_lock = acquire_lock(lock, self._redis, self._lock_key, self._lock_wait)
        try:
            cached = self._load()  # double-check: another process may have refreshed meanwhile
            if self._fresh(cached, failed):
                self._local = cached
                return cached
            if (
                not have_lock
                and cached is not None
                and cached.access_token != failed
                and cached.remaining(self._clock()) > 0
            ):
                return cached  # a slow refresher holds the lock; the old token still works
            response = yield self._token_request(request)
            if response.status_code != 200:
                log.warning("zuora token endpoint answered %s", response.status_code)
                return None
            token = self._parse(response)
            self._store(token)
            self._local = token
            return token
        finally:
            if have_lock:
                # If it expired while we fetched, the next refresher has already taken it over.
                with suppress(LockError):
                    lock.release()

    # -- pieces ---------------------------------------------------------------------------------

    def _fresh(self, token: CachedToken | None, failed: str | None) -> bool:
        return token is not None and token.access_token != failed and self._clock() < token.refresh_at

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        # Form-encoded, never with Authorization (section 1.1); tracked with the call's Track-Id.
        headers = {"Accept": "application/json"}
        if track := request.headers.get("Zuora-Track-Id"):
            headers["Zuora-Track-Id"] = track
        if self._target.entity_id:
            headers["Zuora-Entity-Ids"] = self._target.entity_id
        self.token_requests += 1
        return httpx.Request(
            "POST",
            self.token_url,
            headers=headers,
            data={
                "client_id": self._target.client_id,
                "client_secret": self._target.client_secret,
                "grant_type": "client_credentials",
            },
        )

    def _parse(self, response: httpx.Response) -> CachedToken:
        try:
            body: Any = response.json()
            access_token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or 3599)
        except (ValueError, KeyError, TypeError):
            raise AuthFailed(
                f"Zuora's token endpoint returned no access_token; check {CREDENTIAL_VARIABLES}",
                api="zuora",
                status=response.status_code,
                method="POST",
                url=str(self.token_url),
                request_id=response.headers.get("Zuora-Request-Id"),
            ) from None
        expires_at = self._clock() + expires_in
        refresh_at = expires_at - min(self._margin, expires_in / 2)
        raw = json.dumps({"access_token": access_token, "expires_at": expires_at, "refresh_at": refresh_at})
        return CachedToken(access_token, expires_at, refresh_at, raw)

    def _store(self, token: CachedToken) -> None:
        ttl = max(1, int(token.remaining(self._clock())))
        self._redis.set(self.key, token.raw, ex=ttl)

    def _load(self) -> CachedToken | None:
        raw = self._redis.get(self.key)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            data = json.loads(text)
            expires_at = float(data["expires_at"])
            refresh_at = float(data.get("refresh_at", expires_at - self._margin))
            return CachedToken(str(data["access_token"]), expires_at, refresh_at, text)
        except (ValueError, KeyError, TypeError):
            return None  # unreadable entry: treated as missing and overwritten

    def _discard(self, token: CachedToken) -> None:
        local = self._local
        if local is not None and local.access_token == token.access_token:
            self._local = None
        if token.raw:
            self._discard_script(keys=[self.key], args=[token.raw])
