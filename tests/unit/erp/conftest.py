"""An in-process stand-in for an Acumatica instance: a ``respx`` router behind
``httpx.MockTransport``.

It implements only the system edge the client depends on, as acumatica-api.md describes it
(section 2: cookie login 204 + Set-Cookie, logout 204, 401 without a session, OAuth token grants
with rotating refresh tokens); every data route is scripted per test with :meth:`FakeAcumatica.on`
(the latest script for a path wins). It is not our sandbox: contract tests against the sandbox
live elsewhere.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import pytest
import respx

from shared.backoff import no_jitter
from shared.connections import AcumaticaTarget
from shared.erp.acumatica_client import AcumaticaClient
from shared.erp.acumatica_policy import RetryPolicy

SITE = "https://erp.example.com/AcumaticaERP"
ENDPOINT = "Default/24.200.001"
BASE = f"{SITE}/entity/{ENDPOINT}/"
BASE_PATH = f"/AcumaticaERP/entity/{ENDPOINT}/"

Responder = httpx.Response | Callable[[httpx.Request], httpx.Response] | BaseException


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def http_error(status: int, exception_type: str, message: str) -> httpx.Response:
    return json_response(
        status,
        {
            "message": "An error has occurred.",
            "exceptionMessage": message,
            "exceptionType": exception_type,
            "stackTrace": "   at PX.Api...",
        },
    )


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content, parse_float=Decimal) if request.content else None


def filter_of(request: httpx.Request) -> str:
    """The decoded ``$filter`` of a request."""
    return parse_qs(request.url.query.decode(), keep_blank_values=True)["$filter"][0]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    responses: list[Responder]
    hits: int = 0


@dataclass
class FakeAcumatica:
    sessions: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    routes: list[Route] = field(default_factory=list)
    logins: int = 0
    logouts: list[httpx.Request] = field(default_factory=list)
    token_grants: list[dict[str, str]] = field(default_factory=list)
    login_response: httpx.Response | None = None
    login_script: list[Responder] = field(default_factory=list)  # answers for the next logins
    endpoints: tuple[str, ...] = (ENDPOINT,)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    router: respx.Router = field(init=False)

    def __post_init__(self) -> None:
        self.router = respx.Router(assert_all_called=False)
        self.router.post(path__regex=r"/entity/auth/login$").mock(side_effect=self._login)
        self.router.post(path__regex=r"/entity/auth/logout$").mock(side_effect=self._logout)
        self.router.post(path__regex=r"/identity/connect/token$").mock(side_effect=self._token)
        self.router.get(path__regex=r"^/AcumaticaERP/entity/?$").mock(side_effect=self._discovery)
        self.router.route().mock(side_effect=self._data)  # everything else: the scripted routes

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """The transport's handler (``httpx.MockTransport(fake)``)."""
        return self.router.handler(request)

    @property
    def requests(self) -> list[httpx.Request]:
        """Every request received, in order."""
        return [call.request for call in self.router.calls]

    # -- scripting -------------------------------------------------------------------------------

    def on(self, method: str, path: str, *responses: Responder) -> Route:
        """Answer ``method`` on ``path`` (a regex relative to the endpoint, matched on the whole
        path) with ``responses`` in turn; the last one repeats."""
        route = Route(method, re.compile(re.escape(BASE_PATH) + path + "$"), list(responses))
        self.routes.insert(0, route)
        return route

    def expire_sessions(self) -> None:
        self.sessions.clear()
        self.tokens.clear()

    def data_requests(self, method: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if "/entity/auth/" not in r.url.path
            and "/identity/" not in r.url.path
            and r.url.path.rstrip("/") != "/AcumaticaERP/entity"
            and (method is None or r.method == method)
        ]

    # -- the server ------------------------------------------------------------------------------

    def _logout(self, request: httpx.Request) -> httpx.Response:
        self.logouts.append(request)
        self.sessions.discard(self._session_of(request) or "")
        return httpx.Response(
            204, headers={"Set-Cookie": ".ASPXAUTH=; expires=Mon, 11-Oct-1999 22:00:00 GMT; path=/"}
        )

    def _discovery(self, request: httpx.Request) -> httpx.Response:
        rows = [
            {"name": e.split("/")[0], "version": e.split("/")[1], "href": f"{SITE}/entity/{e}/"}
            for e in self.endpoints
        ]
        return json_response(200, {"version": {"acumaticaBuildVersion": "24.210.0012"}, "endpoints": rows})

    def _data(self, request: httpx.Request) -> httpx.Response:
        if not self._authorised(request):
            return json_response(401, {"message": "The user is not signed in to the system."})
        for route in self.routes:
            if route.method == request.method and route.pattern.match(unquote(request.url.path)):
                index = min(route.hits, len(route.responses) - 1)
                route.hits += 1
                answer = route.responses[index]
                if isinstance(answer, BaseException):
                    raise answer
                return answer(request) if callable(answer) else answer
        return json_response(
            404, {"message": f"No HTTP resource was found that matches the request URI '{request.url}'."}
        )

    def _login(self, request: httpx.Request) -> httpx.Response:
        self.logins += 1
        if self.login_script:
            answer = self.login_script.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer(request) if callable(answer) else answer
        if self.login_response is not None:
            return self.login_response
        token = f"auth{next(self._counter)}"
        self.sessions.add(token)
        return httpx.Response(
            204,
            headers=[
                ("Set-Cookie", f".ASPXAUTH={token}; path=/; HttpOnly"),
                ("Set-Cookie", f"ASP.NET_SessionId=s{token}; path=/; HttpOnly; SameSite=Lax"),
                ("Set-Cookie", "UserBranch=1; path=/"),
            ],
        )

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.token_grants.append(form)
        if form["grant_type"] == "refresh_token" and form["refresh_token"] not in self.refresh_tokens:
            return json_response(400, {"error": "invalid_grant"})
        if form["grant_type"] == "password" and form.get("password") != "secret":
            return json_response(
                400, {"error": "invalid_grant", "error_description": "invalid_username_or_password"}
            )
        self.refresh_tokens.discard(form.get("refresh_token", ""))
        access, refresh = f"at{next(self._counter)}", f"rt{next(self._counter)}"
        self.tokens.add(access)
        self.refresh_tokens.add(refresh)
        return json_response(
            200,
            {
                "access_token": access,
                "expires_in": 3600,
                "token_type": "Bearer",
                "refresh_token": refresh,
                "scope": "api offline_access",
            },
        )

    def _session_of(self, request: httpx.Request) -> str | None:
        cookie = request.headers.get("cookie", "")
        match = re.search(r"\.ASPXAUTH=([^;]+)", cookie)
        return match.group(1) if match else None

    def _authorised(self, request: httpx.Request) -> bool:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:] in self.tokens
        return self._session_of(request) in self.sessions


@pytest.fixture
def fake() -> FakeAcumatica:
    return FakeAcumatica()


def make_target(**overrides: Any) -> AcumaticaTarget:
    values: dict[str, Any] = {
        "url": SITE,
        "endpoint": ENDPOINT,
        "username": "apiuser",
        "password": "secret",
        "tenant": "Company",
        "branch": "HQ",
        "requests_per_minute": 6_000_000,  # the bucket never makes a unit test wait
        "max_concurrent": 4,
        "max_sessions": 2,
    }
    values.update(overrides)
    return AcumaticaTarget(**values)


@dataclass
class DurableCopy:
    """The durable refresh-token store in memory (``DurableRefreshToken``; the ledger's is tested
    in tests/unit/ledger): every token saved, in order; ``load`` answers the last one."""

    saved: list[str] = field(default_factory=list)

    def load(self) -> str | None:
        return self.saved[-1] if self.saved else None

    def save(self, token: str) -> None:
        self.saved.append(token)


@dataclass
class Sleeper:
    """Records requested sleeps; sleeps for real only for tiny waits (a Redis pause of a few ms
    must really elapse before the bucket admits the next request)."""

    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if seconds <= 0.02:
            time.sleep(seconds)


FAST_POLICY = RetryPolicy(max_attempts=3, base=0.001, cap=0.004, floor=0.0, max_inline_wait=1.0)


@pytest.fixture
def make_client(fake, fake_redis, connection_name):
    """Build clients on one fake instance and one Redis (several = several worker processes)."""
    made: list[AcumaticaClient] = []

    def build(*, audit=None, target: AcumaticaTarget | None = None, **options: Any) -> AcumaticaClient:
        options.setdefault("policy", FAST_POLICY)
        options.setdefault("jitter", no_jitter)
        options.setdefault("sleep", Sleeper())
        options.setdefault("poll_interval", 0.001)
        options.setdefault("poll_max_interval", 0.002)
        client = AcumaticaClient(
            target or make_target(),
            connection=connection_name,
            redis=fake_redis,
            audit=audit,
            transport=httpx.MockTransport(fake),
            **options,
        )
        made.append(client)
        return client

    yield build
    for client in made:
        client._http.close()


def new_id() -> str:
    return str(uuid.uuid4())
