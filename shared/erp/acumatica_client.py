"""The Acumatica contract-based REST client: sessions, limits, retries, audit and typed errors.

:class:`AcumaticaClient` is the composition root of the Acumatica side (one per connection and
process, owning one ``httpx.Client``). It speaks plain records: bodies are built by
:func:`~shared.erp.acumatica_wire.wrap` and answers read back with
:func:`~shared.erp.acumatica_wire.unwrap`, so no caller handles ``{"value": ...}``. Entity
knowledge (which fields, which filters) lives in :mod:`shared.erp.acumatica`.

Every request except logout passes the fleet-wide limits first: a Redis token bucket at the
licence's requests per minute (burst 1) and a Redis concurrency limiter at its concurrent-request
limit (acumatica-api.md section 5.2: excess requests queue silently and then fail with 429). A 429
pauses the bucket for the whole fleet. Retries follow :func:`~shared.erp.acumatica_policy.decide`;
a 401 re-logs in once. Every attempt is reported to the audit hook, redacted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
from cryptography.fernet import MultiFernet

from shared.backoff import Jitter, full_jitter
from shared.connections import AcumaticaTarget
from shared.coordination.limits import (
    ConcurrencyLimiter,
    ThrottleTimeout,
    TokenBucket,
    holder_token,
    reap_key,
)
from shared.coordination.scripts import COMPARE_AND_DELETE
from shared.erp import fence
from shared.erp.acumatica_policy import Decision, NetworkError, RetryPolicy, decide, error_for
from shared.erp.acumatica_session import DurableRefreshToken, Session, SessionManager
from shared.erp.acumatica_wire import dumps, key_path, loads, query_string, unwrap, wrap
from shared.erp.errors import EndpointNotFound, OutcomeUnknown
from shared.errors import ApiError, RateLimited, Rejected, Transient
from shared.exchange import AuditHook, Exchange, current_subject, redact_body, redact_headers
from shared.settings import ACUMATICA_ENDPOINTS

log = logging.getLogger("ledgerbridge.acumatica")

API = "acumatica"
ENDPOINT_VARIABLE = "LEDGERBRIDGE_ACUMATICA_ENDPOINT"
# Renewals of the shared session within one call (see _call: only one may be our own login).
MAX_RENEWALS = 3


@dataclass(frozen=True)
class _Outcome:
    response: httpx.Response | None
    decision: Decision | None  # None: the response is final without a retry decision
    error: NetworkError | None = None
    body: Any = None


def _network_error(exc: httpx.TransportError) -> NetworkError:
    """Whether a request may have reached the server: a refused or pooled connection did not."""
    if isinstance(
        exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol
    ):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "read"


def _parse(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return loads(response.content)
    except ValueError:
        return None


class AcumaticaClient:
    """Requests to one Acumatica instance and endpoint for one connection (see module docstring).

    ``sleep`` and ``clock`` are injectable for tests; ``cipher`` seals the shared session and
    refresh token in Redis; ``refresh_tokens`` keeps the newest OAuth refresh token where it
    outlives Redis (see :mod:`shared.erp.acumatica_session`).
    """

    def __init__(
        self,
        target: AcumaticaTarget,
        *,
        connection: str,
        redis: Any,
        audit: AuditHook | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
        jitter: Jitter = full_jitter,
        cipher: MultiFernet | None = None,
        refresh_tokens: DurableRefreshToken | None = None,
        timeout: float = 100.0,
        throttle_wait: float = 30.0,
        poll_interval: float = 1.0,
        poll_max_interval: float = 5.0,
        action_timeout: float = 300.0,
    ) -> None:
        self.target = target
        self.connection = connection
        self.endpoint = target.endpoint.strip("/")
        self.instance_url = target.url.rstrip("/")
        self.base_url = f"{self.instance_url}/entity/{self.endpoint}/"
        self._redis = redis
        self._audit = audit
        self._sleep = sleep
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._jitter = jitter
        self._throttle_wait = throttle_wait
        self._poll_interval = poll_interval
        self._poll_max_interval = poll_max_interval
        self._action_timeout = action_timeout
        self._timeout = timeout
        prefix = f"ledgerbridge:{connection}:acumatica"
        self._gate_prefix = f"{prefix}:busy:"
        self._release_gate = redis.register_script(COMPARE_AND_DELETE)
        # TokenBucket.per_minute(..., burst=1), built directly so ``sleep`` is injectable.
        self._bucket = TokenBucket(
            redis, f"{prefix}:bucket", rate=target.requests_per_minute / 60.0, capacity=1, sleep=sleep
        )
        self._inflight = ConcurrencyLimiter(
            redis, f"{prefix}:inflight", limit=target.max_concurrent, lease=timeout + 30.0, sleep=sleep
        )
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
        self._local = threading.local()
        self.sessions = SessionManager(
            target,
            connection=connection,
            redis=redis,
            send=self._send_auth,
            clock=clock,
            cipher=cipher,
            refresh_tokens=refresh_tokens,
        )
        self._closed = False

    # -- the API ---------------------------------------------------------------------------------

    def get_list(
        self,
        entity: str,
        *,
        filter: str | None = None,
        select: Sequence[str] = (),
        expand: Sequence[str] = (),
        top: int | None = None,
        skip: int | None = None,
    ) -> list[dict[str, Any]]:
        """``GET {entity}`` with OData-style options (section 4.2); records unwrapped."""
        params = self._options(filter=filter, select=select, expand=expand, top=top, skip=skip)
        body = self._json(self._call("GET", entity, params=params, repeatable=True)[0])
        if not isinstance(body, list):
            raise Transient(f"GET {entity} did not return a list", api=API)
        result: list[dict[str, Any]] = unwrap(body)
        return result

    def get_record(
        self, entity: str, *keys: str, select: Sequence[str] = (), expand: Sequence[str] = ()
    ) -> dict[str, Any]:
        """``GET {entity}/{k1}/{k2}`` (or ``/{id}``). A missing record raises NotFound (the server
        answers 500 NoEntitySatisfiesTheCondition, section 4.2)."""
        params = self._options(select=select, expand=expand)
        body = self._json(self._call("GET", f"{entity}/{key_path(*keys)}", params=params, repeatable=True)[0])
        record: dict[str, Any] = unwrap(body) if isinstance(body, dict) else {}
        return record

    def put(
        self,
        entity: str,
        record: Mapping[str, Any],
        *,
        expand: Sequence[str] = (),
        select: Sequence[str] = (),
        repeatable: bool,
    ) -> dict[str, Any]:
        """``PUT {entity}`` (create or update, section 4.1); the answer unwrapped. ``repeatable``
        must be True only for upserts by key: a create that times out raises OutcomeUnknown."""
        params = self._options(select=select, expand=expand)
        response, _ = self._call("PUT", entity, params=params, body=wrap(record), repeatable=repeatable)
        body = self._json(response)
        result: dict[str, Any] = unwrap(body) if isinstance(body, dict) else {}
        return result

    def invoke(
        self, entity: str, action: str, record: Mapping[str, Any], parameters: Mapping[str, Any] | None = None
    ) -> None:
        """Run ``POST {entity}/{action}`` and wait until it finished (section 4.4): 204 = done (its
        Location is never followed); 202 = poll the Location on the same session until 204.

        While the action runs, other requests to that form in the session would fail, and the
        session is shared: the form is held busy in Redis and other callers wait for it.
        """
        payload: dict[str, Any] = {"entity": wrap(record)}
        if parameters:
            payload["parameters"] = wrap(parameters)
        with self._hold_form(entity):
            response, session = self._call("POST", f"{entity}/{action}", body=payload, repeatable=False)
            if response.status_code != 202:
                return
            location = response.headers.get("location")
            if not location:
                raise OutcomeUnknown(
                    f"{entity}/{action} answered 202 without a Location", api=API, status=202
                )
            self._await_action(urljoin(self.instance_url + "/", location), f"{entity}/{action}", session)

    def endpoints(self) -> list[str]:
        """``Name/Version`` of every endpoint ``GET /entity`` lists (section 1.3)."""
        response, _ = self._call("GET", self.instance_url + "/entity", repeatable=True, discover=False)
        body = self._json(response)
        rows = body.get("endpoints", []) if isinstance(body, dict) else body if isinstance(body, list) else []
        return [f"{row.get('name')}/{row.get('version')}" for row in rows if isinstance(row, dict)]

    def logout(self) -> None:
        """Log out the connection's shared session, whoever created it."""
        self.sessions.logout()

    def close(self) -> None:
        """Log out the session this process created (never leaks it) and close the HTTP client."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sessions.close()
        finally:
            self._http.close()

    # -- one call: session, 401, errors ----------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
        repeatable: bool,
        discover: bool = True,
        pinned: Session | None = None,
    ) -> tuple[httpx.Response, Session]:
        """One logical call with retries: a 2xx response and the session it used, or a typed error.

        ``path`` is relative to the endpoint (``Invoice``) or an absolute URL; ``params`` are
        percent-encoded here; ``body`` is already wrapped (only :meth:`put` and :meth:`invoke`
        build bodies). A 401 re-logs in once (the request was not processed, so even a create may
        be repeated; a session adopted from another worker that ended it meanwhile does not
        count as our login); a 404 is explained by endpoint discovery when ``discover``. With ``pinned``
        the call must run in that session (an action's status exists only there): a 401 raises
        OutcomeUnknown instead.
        """
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        if params:
            url += "?" + query_string(params)
        content = None if body is None else dumps(body).encode()
        entity = self._entity_of(url)
        if pinned is not None and entity is not None:
            self._await_form(entity)
        current = pinned or self._session_for(entity)
        renewals = 0
        while True:
            headers = current.headers()
            if content is not None:
                headers["Content-Type"] = "application/json"
            request = httpx.Request(method, url, headers=headers, content=content)
            # Only a data request that may create something is fenced (never a sign-in).
            outcome = self._exchange(request, repeatable=repeatable, fenced=not repeatable)
            response = outcome.response
            if response is not None and response.status_code == 401:
                if pinned is not None:
                    raise OutcomeUnknown(
                        "the session ended while an action ran; re-read the document",
                        api=API,
                        status=401,
                        method=method,
                        url=url,
                    )
                # Re-login once (section 2.1): a session this process signed in after the 401
                # and still refused is final. A session adopted from another worker may instead
                # have been logged out by that worker as it shut down (it ends what it created),
                # which is not a credentials problem: renew again, a few times at most.
                own = current.owner == self.sessions.owner
                if renewals < MAX_RENEWALS and not (renewals and own):
                    current = self.sessions.renew(current)
                    renewals += 1
                    continue
            if response is not None:
                current = self.sessions.absorb(current, response)
                if response.status_code < 300 and outcome.decision is None:
                    return response, current
                if response.status_code == 404 and discover:
                    raise self._not_found_error(method, url)
            raise error_for(
                status=None if response is None else response.status_code,
                body=outcome.body,
                method=method,
                url=url,
                decision=outcome.decision or Decision(False, 0.0, "final"),
                error=outcome.error,
                body_text=None if response is None else redact_body(response.text),
            )

    def _exchange(
        self,
        request: httpx.Request,
        *,
        repeatable: bool,
        retry_statuses: bool = True,
        throttled: bool = True,
        fenced: bool = False,
    ) -> _Outcome:
        """Attempts of one request until a final answer: a 2xx/3xx (decision None), a final error
        response, or a network failure (response None) with the decision that ended it."""
        attempt = 0
        while True:
            attempt += 1
            response, error = self._send_once(request, attempt, throttled=throttled, fenced=fenced)
            status = None if response is None else response.status_code
            if status is not None and (status < 400 or status == 401 or not retry_statuses):
                return _Outcome(response, None)
            body = None if response is None else _parse(response)
            decision = decide(
                attempt,
                status=status,
                error=error,
                body=body,
                method=request.method,
                repeatable=repeatable,
                policy=self._policy,
                jitter=self._jitter,
            )
            if not decision.retry:
                return _Outcome(response, decision, error, body)
            log.info(
                "acumatica %s %s: %s; retrying in %.2fs",
                request.method,
                request.url,
                decision.reason,
                decision.wait,
            )
            if status == 429:
                self._bucket.pause(decision.wait)  # the whole fleet backs off, not just us
            else:
                self._sleep(decision.wait)

    def _send_once(
        self, request: httpx.Request, attempt: int, *, throttled: bool, fenced: bool = False
    ) -> tuple[httpx.Response | None, NetworkError | None]:
        """One attempt. A ``fenced`` request (a create) inside a posting's deadline is checked
        against it the moment before it leaves (:mod:`shared.erp.fence`)."""
        started = self._clock()
        try:
            if throttled:
                # The concurrency slot and the per-minute permit in one step: the licence counts
                # a request when it reaches the server (section 5.2), so the permit must be taken
                # the moment before sending. A permit taken before queueing for a slot would let
                # permits granted a second apart leave together and burst past the limit.
                with self._inflight.slot(max_wait=self._throttle_wait, bucket=self._bucket):
                    if fenced:
                        self._fence(request)
                    response = self._http.send(request)
                    response.read()
            else:
                response = self._http.send(request)
                response.read()
        except ThrottleTimeout as exc:
            raise RateLimited(
                "the fleet-wide Acumatica request limit is saturated",
                api=API,
                retry_after=max(exc.wait, 1.0),
                method=request.method,
                url=str(request.url),
            ) from None
        except httpx.TransportError as exc:
            kind = _network_error(exc)
            self._report(request, None, started, attempt, error=f"{type(exc).__name__}: {exc}")
            return None, kind
        self._report(request, response, started, attempt)
        return response, None

    def _fence(self, request: httpx.Request) -> None:
        """Cut the request's timeout to its posting's deadline, or refuse to send it (NotSent)."""
        deadline = fence.current()
        if deadline is None:
            return
        seconds = deadline.request_timeout(self._timeout, f"{request.method} {request.url.path}", api=API)
        if seconds < self._timeout:
            request.extensions["timeout"] = httpx.Timeout(seconds, connect=min(seconds, 15.0)).as_dict()

    def _send_auth(self, request: httpx.Request) -> httpx.Response:
        """The session layer's sender. A refused sign-in is never repeated (it may lock the user
        out), and neither is one that timed out after sending: it may have opened a session we
        never learnt of, and each one counts against the licence until it idles out. Only a
        connection that failed before sending is retried. Logout skips the queue (section 5.2)."""
        is_logout = request.url.path.endswith("/entity/auth/logout")
        outcome = self._exchange(request, repeatable=is_logout, retry_statuses=False, throttled=not is_logout)
        if outcome.response is None:
            why = outcome.decision.reason if outcome.decision else "network error"
            raise Transient(
                f"could not reach Acumatica to sign in ({why})",
                api=API,
                method=request.method,
                url=str(request.url),
            )
        return outcome.response

    # -- errors ----------------------------------------------------------------------------------

    def _not_found_error(self, method: str, url: str) -> ApiError:
        """A 404 means an unknown endpoint, entity or action (section 1.3); ``GET /entity`` tells
        which, so the message can name the variable to fix."""
        kw: dict[str, Any] = {"api": API, "status": 404, "method": method, "url": url}
        try:
            available = self.endpoints()
        except ApiError:
            available = []
        if self.endpoint in available:
            what = url.removeprefix(self.base_url).split("?", 1)[0]
            return Rejected(f"{what} does not exist in endpoint {self.endpoint} (404)", **kw)
        usable = [e for e in available if e in ACUMATICA_ENDPOINTS] or list(ACUMATICA_ENDPOINTS)
        return EndpointNotFound(
            f"endpoint {self.endpoint} not found on this instance; set {ENDPOINT_VARIABLE} to one of "
            f"{', '.join(usable)} (GET {self.instance_url}/entity lists them)",
            **kw,
        )

    # -- long-running actions --------------------------------------------------------------------

    def _await_action(self, url: str, what: str, session: Session) -> None:
        interval, waited = self._poll_interval, 0.0
        while waited < self._action_timeout:
            self._sleep(interval)
            waited += interval
            response, _ = self._call("GET", url, repeatable=True, discover=False, pinned=session)
            if response.status_code != 202:
                return  # 204 (or 200): finished; the caller re-reads the document's Status
            interval = min(interval * 1.5, self._poll_max_interval)
        raise OutcomeUnknown(f"{what} still running after {waited:.0f}s", api=API, status=202, url=url)

    def _entity_of(self, url: str) -> str | None:
        if not url.startswith(self.base_url):
            return None
        return url[len(self.base_url) :].split("?", 1)[0].split("/", 1)[0] or None

    @contextmanager
    def _hold_form(self, entity: str) -> Iterator[None]:
        held: set[str] = self._held()
        if entity in held:
            yield
            return
        key = self._gate_prefix + entity
        waited = 0.0
        ttl_ms = int((self._action_timeout + 60.0) * 1000)
        token = holder_token()  # a killed holder's gate is broken at once (reap_key)
        while not self._redis.set(key, token, nx=True, px=ttl_ms):
            if not reap_key(self._redis, key):
                waited = self._wait_form(entity, waited)
        held.add(entity)
        try:
            yield
        finally:
            held.discard(entity)
            self._release_gate(keys=[key], args=[token])  # only if still ours

    def _session_for(self, entity: str | None) -> Session:
        """The shared session, once ``entity``'s form is not busy with a long-running action;
        the form's gate and the session are read in one Redis round trip."""
        if entity is None or entity in self._held():
            return self.sessions.current()
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(self._gate_prefix + entity)
        pipe.get(self.sessions.key)
        busy, stored = pipe.execute()
        if not busy:
            return self.sessions.current(stored=stored)
        self._await_form(entity)
        return self.sessions.current()

    def _await_form(self, entity: str) -> None:
        if entity in self._held():
            return
        waited = 0.0
        key = self._gate_prefix + entity
        while self._redis.exists(key):
            if not reap_key(self._redis, key):
                waited = self._wait_form(entity, waited)

    def _wait_form(self, entity: str, waited: float) -> float:
        if waited >= self._action_timeout:
            raise Transient(f"the {entity} form is busy with a long-running action", api=API)
        self._sleep(self._poll_interval)
        return waited + self._poll_interval

    def _held(self) -> set[str]:
        held: set[str] | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = set()
        return held

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _options(
        *,
        filter: str | None = None,
        select: Sequence[str] = (),
        expand: Sequence[str] = (),
        top: int | None = None,
        skip: int | None = None,
    ) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if filter:
            params.append(("$filter", filter))
        if select:
            params.append(("$select", ",".join(select)))
        if expand:
            params.append(("$expand", ",".join(expand)))
        if skip is not None:
            params.append(("$skip", str(skip)))
        if top is not None:
            params.append(("$top", str(top)))
        return params

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        return _parse(response)

    def _report(
        self,
        request: httpx.Request,
        response: httpx.Response | None,
        started: float,
        attempt: int,
        *,
        error: str | None = None,
    ) -> None:
        if self._audit is None:
            return
        exchange = Exchange(
            api=API,
            connection=self.connection,
            method=request.method,
            url=str(request.url),
            status=None if response is None else response.status_code,
            duration_ms=round((self._clock() - started) * 1000.0, 3),
            request_headers=redact_headers(dict(request.headers)),
            request_body=redact_body(request.content),
            response_headers={} if response is None else redact_headers(dict(response.headers)),
            response_body=None if response is None else redact_body(response.content),
            error=error,
            attempt=attempt,
            subject=current_subject.get(),
        )
        try:
            self._audit(exchange)
        except Exception:
            # The exchange already happened: failing here would turn a committed create into an
            # unknown outcome. The failure is logged loudly instead.
            log.exception("the audit hook failed for %s %s", request.method, request.url)
