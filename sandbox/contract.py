"""Checking the sandboxes' traffic against the vendors' own API descriptions.

Both sandboxes can run with :class:`ContractMiddleware` around their routes: every request a
client sends and every answer the sandbox gives is checked by the vendor's :class:`Checker`
(Zuora: the operations and models of the official ``zuora-sdk``; Acumatica: the published
endpoint definitions). A problem never changes the answer: it is recorded as a
:class:`Violation` in :data:`RECORDER` (and, when ``LEDGERBRIDGE_SANDBOX_CONTRACT_LOG`` names a
file, appended to it as a JSON line, for sandboxes running in another process), so a test suite
can fail the test that caused it.

The checks are on when ``LEDGERBRIDGE_SANDBOX_CONTRACTS=1`` (the test suite sets it) or when
``create_app(..., contracts=True)`` asks; the checkers import the vendors' descriptions lazily,
so a sandbox without them installed still runs with the checks off.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl

log = logging.getLogger("ledgerbridge.sandbox.contract")

ENABLE_VARIABLE = "LEDGERBRIDGE_SANDBOX_CONTRACTS"
LOG_VARIABLE = "LEDGERBRIDGE_SANDBOX_CONTRACT_LOG"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def contracts_enabled() -> bool:
    return os.environ.get(ENABLE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class HttpRequest:
    """A request as the sandbox received it (path without the site prefix)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)


def header_value(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case), or None."""
    wanted = name.lower()
    return next((v for k, v in headers if k.lower() == wanted), None)


@dataclass(frozen=True)
class Checked:
    """What a checker found: the vendor's operation (None when nothing matched) and problems."""

    operation: str | None
    problems: tuple[str, ...] = ()


class Checker(Protocol):
    api: str

    def check_request(self, request: HttpRequest) -> Checked: ...

    def check_response(self, request: HttpRequest, response: HttpResponse) -> Checked: ...


@dataclass(frozen=True)
class Violation:
    api: str
    direction: Literal["request", "response"]
    method: str
    path: str
    status: int | None
    operation: str | None
    problems: tuple[str, ...]

    def __str__(self) -> str:
        status = "" if self.status is None else f" -> {self.status}"
        where = f"{self.api} {self.direction} {self.method} {self.path}{status}"
        op = f" ({self.operation})" if self.operation else ""
        return f"{where}{op}:\n    " + "\n    ".join(self.problems)


@dataclass
class ContractRecorder:
    """Every violation seen by this process's sandboxes, and how often each operation was checked."""

    violations: list[Violation] = field(default_factory=list)
    operations: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, violation: Violation) -> None:
        with self._lock:
            self.violations.append(violation)
        path = os.environ.get(LOG_VARIABLE)
        if path:
            with self._lock, open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(violation)) + "\n")
        log.warning("vendor contract violation: %s", violation)

    def saw(self, api: str, operation: str) -> None:
        with self._lock:
            self.operations[(api, operation)] += 1

    def mark(self) -> int:
        with self._lock:
            return len(self.violations)

    def since(self, mark: int) -> list[Violation]:
        with self._lock:
            return list(self.violations[mark:])


RECORDER = ContractRecorder()


def decoded(body: bytes, encoding: str | None) -> bytes:
    """``body`` without its content coding (gzip or deflate)."""
    if not encoding or not body:
        return body
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def json_body(body: bytes) -> tuple[Any, str | None]:
    """The parsed JSON of ``body`` (numbers with a fraction as float, as any JSON client sees
    them) and None, or (None, a problem) when it is not JSON."""
    if not body.strip():
        return None, None
    try:
        return json.loads(body), None
    except ValueError as exc:
        return None, f"the body is not JSON ({exc})"


class ContractMiddleware:
    """ASGI middleware: passes every exchange through unchanged and checks it with ``checker``
    once the answer is complete, before handing it on. Control-plane paths (``/_sandbox``) are not
    the vendor's API and are not checked."""

    def __init__(
        self,
        app: ASGIApp,
        checker: Checker,
        recorder: ContractRecorder = RECORDER,
        skip_prefixes: Sequence[str] = ("/_sandbox",),
    ) -> None:
        self.app = app
        self.checker = checker
        self.recorder = recorder
        self.skip_prefixes = tuple(skip_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(self.skip_prefixes):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away mid-request (a killed worker): nothing to judge
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
        whole = not more
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status: int | None = None
        response_headers: list[tuple[str, str]] = []
        response_chunks: list[bytes] = []
        held: list[Message] = []

        async def hold(message: Message) -> None:
            # The answer is held until it is checked, so a violation is on record before the
            # client has its answer (a test that just got it sees the violation too).
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_headers.extend(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
                )
            elif message["type"] == "http.response.body":
                response_chunks.append(message.get("body", b""))
            held.append(message)

        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        request = HttpRequest(
            method=str(scope.get("method", "GET")).upper(),
            path=path,
            query=tuple(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
            headers=tuple(raw_headers),
            body=body,
        )
        try:
            await self.app(scope, replay, hold)
        finally:
            if status is not None and whole:
                response = HttpResponse(
                    status=status, headers=tuple(response_headers), body=b"".join(response_chunks)
                )
                self._check(request, response)
        for message in held:
            await send(message)

    def _check(self, request: HttpRequest, response: HttpResponse) -> None:
        api = self.checker.api
        try:
            asked = self.checker.check_request(request)
            answered = self.checker.check_response(request, response)
        except Exception as exc:  # a checker bug must show up, not pass silently
            log.exception("contract checker failed")
            asked, answered = Checked(None, (f"the contract checker failed: {exc!r}",)), Checked(None)
        for checked, direction, status in (
            (asked, "request", None),
            (answered, "response", response.status),
        ):
            if checked.operation:
                self.recorder.saw(api, checked.operation)
            if checked.problems:
                self.recorder.record(
                    Violation(
                        api=api,
                        direction=direction,  # type: ignore[arg-type]
                        method=request.method,
                        path=request.path,
                        status=status,
                        operation=checked.operation,
                        problems=checked.problems,
                    )
                )
