"""The callout receiver: ``uvicorn worker.web:app`` (the Procfile's ``web`` process).

``POST /zuora/callouts`` (the default connection) and ``POST /zuora/callouts/{connection}`` (a
stored connection) take Zuora callouts made with our documented template (see
:mod:`shared.callouts`): it checks the HMAC signature over the raw body, records the notification
in the ledger (de-duplicated on ``Zuora-Notification-Id``) and hands it to a
:class:`~shared.callouts.CalloutBatcher`, which enqueues ``ledgerbridge.push.callouts`` for the
callouts of each ``LEDGERBRIDGE_CALLOUT_BATCH_SECONDS`` (0.1 s) - answering within milliseconds,
as Zuora gives a callout 25 s and treats anything but 200 as a failure (zuora-api.md section
12.2). The work itself (re-fetch, post, mark) happens in a worker. Each connection's callouts are
verified with that connection's own secrets (a stored connection's, or the default connection's
``LEDGERBRIDGE_CALLOUT_HMAC_SECRET``), so one tenant's secret cannot sign another's callouts; a
body over ``LEDGERBRIDGE_CALLOUT_MAX_BODY_BYTES`` is refused with 413 before it is read whole.

``GET /healthz`` answers 200 for load balancers. ``GET /metrics`` serves ledgerbridge's own metrics
in the Prometheus text format (:mod:`shared.metrics`: records by state and stream, missed-by-mark,
missed-by-push, API calls, 429s and token requests per API) to a scraper that presents
``Authorization: Bearer <LEDGERBRIDGE_METRICS_TOKEN>``; without that setting it answers 404 (the
metrics name connections and show what is open: they are not for the callout port's public).

``/console`` serves the Finance console (:mod:`worker.console`): the pages for the people who run
month-end, behind a sign-in.

Everything the endpoint needs (settings, ledger, the enqueue function, the clock) is injectable
through :func:`create_app`; the module-level ``app`` resolves them from the environment on the
first request, so importing this module needs no configuration.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from shared import callouts, metrics
from shared.connections import environment_callout_secrets
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox
from shared.settings import Settings
from worker.console import PREFIX as CONSOLE_PREFIX
from worker.console import ConsoleDeps, create_console

CALLOUT_PATH = "/zuora/callouts"
Enqueue = Callable[[str, int], None]  # (connection, callout id)


def celery_send(connection: str, callout_ids: list[int]) -> None:
    """Send ``ledgerbridge.push.callouts`` for a batch to this deployment's queue (no broker
    retries: a failure must come back at once, the sweep sends it later)."""
    from worker.app import app as celery_app

    celery_app.send_task(
        "ledgerbridge.push.callouts",
        kwargs={"connection": connection, "callout_ids": callout_ids},
        retry=False,
    )


@dataclass
class _Deps:
    settings: Settings | None = None
    ledger: Ledger | None = None
    enqueue: Enqueue | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    redis: Any = None
    batcher: callouts.CalloutBatcher | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def redis_client(self) -> Any:
        from shared import ports

        return self.redis if self.redis is not None else ports.redis_client()

    def callout_secrets(self, settings: Settings, ledger: Ledger, name: str) -> tuple[str, ...] | None:
        """The callout secrets of connection ``name`` (current first), or None for an unknown
        connection: the default one's come from the environment, a stored one's from the ledger
        (as ``shared.ports.connection`` resolves a name)."""
        stored = name in {row.name for row in ledger.list_connections()}
        if name == settings.connection and (settings.zuora_base_url is not None or not stored):
            return environment_callout_secrets(settings)
        if not stored:
            return None
        key = settings.secret_key.get_secret_value() if settings.secret_key else None
        return ledger.get_connection(name, SecretBox.from_setting(key)).callout_secrets

    def resolved(self) -> tuple[Settings, Ledger, Enqueue]:
        from shared import ports

        settings = self.settings if self.settings is not None else ports.settings()
        ledger = self.ledger if self.ledger is not None else ports.ledger()
        if self.enqueue is not None:
            return settings, ledger, self.enqueue
        with self.lock:
            if self.batcher is None:
                self.batcher = callouts.CalloutBatcher(
                    celery_send, ledger, window=settings.callout_batch_seconds
                )
            return settings, ledger, self.batcher.submit

    def close(self) -> None:
        """Send the callouts the batcher still holds (on shutdown)."""
        with self.lock:
            batcher, self.batcher = self.batcher, None
        if batcher is not None:
            batcher.close()


def create_app(
    *,
    settings: Settings | None = None,
    ledger: Ledger | None = None,
    enqueue: Enqueue | None = None,
    clock: Callable[[], datetime] | None = None,
    redis: Any = None,
    console: ConsoleDeps | None = None,
) -> FastAPI:
    """The receiver. Unset dependencies come from ``shared.ports`` on the first request
    (``redis``: where ``GET /metrics`` reads the API counters; ``console``: the Finance console's,
    by default this app's settings and ledger)."""
    deps = _Deps(settings, ledger, enqueue, clock or (lambda: datetime.now(UTC)), redis)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(deps.close)

    web = FastAPI(
        title="ledgerbridge callout receiver",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    web.mount(
        CONSOLE_PREFIX,
        create_console(
            console
            or ConsoleDeps(
                settings=lambda: deps.settings if deps.settings is not None else _settings(),
                ledger=lambda: deps.ledger if deps.ledger is not None else _ledger(),
                clock=deps.clock,
            )
        ),
    )

    @web.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    @web.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        settings = deps.settings if deps.settings is not None else await run_in_threadpool(_settings)
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        if not token:
            return JSONResponse({"error": "not found"}, status_code=404)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return JSONResponse(
                {"error": "give Authorization: Bearer <LEDGERBRIDGE_METRICS_TOKEN>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )

        def scrape() -> bytes:
            settings, ledger, _ = deps.resolved()
            # The default connection is listed even before it has a record, so its series exist.
            return metrics.exposition(ledger, deps.redis_client(), also=[settings.connection])

        # Blocking ledger and Redis reads: off the event loop, like the callouts.
        body = await run_in_threadpool(scrape)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    async def receive(request: Request, connection: str | None) -> JSONResponse:
        settings = deps.settings if deps.settings is not None else await run_in_threadpool(_settings)
        limit = settings.callout_max_body_bytes
        body = await _read_at_most(request, limit)  # raw bytes: the signature covers them exactly
        if body is None:
            return JSONResponse({"error": f"the body is larger than {limit} bytes"}, status_code=413)
        headers = dict(request.headers)  # lower-cased names

        def handle() -> callouts.Answer | None:
            settings, ledger, enqueue = deps.resolved()
            name = connection or settings.connection
            secrets = deps.callout_secrets(settings, ledger, name)
            if secrets is None:
                return None
            return callouts.receive(
                headers=headers,
                body=body,
                secrets=secrets,
                ledger=ledger,
                connection=name,
                enqueue=lambda callout_id: enqueue(name, callout_id),
                now=deps.clock(),
                max_age=timedelta(seconds=settings.callout_max_age_seconds),
                max_body=limit,
            )

        # The ledger and the broker are blocking clients: keep them off the event loop.
        answer = await run_in_threadpool(handle)
        if answer is None:
            # Not retried by Zuora (only 1xx/403/408/429/5xx are): a wrong URL is configuration.
            return JSONResponse({"error": f"unknown connection {connection!r}"}, status_code=404)
        return JSONResponse(answer.body, status_code=answer.status)

    @web.post(CALLOUT_PATH)
    async def zuora_callout(request: Request) -> JSONResponse:
        """Callouts for the default connection (``LEDGERBRIDGE_CONNECTION``)."""
        return await receive(request, None)

    @web.post(CALLOUT_PATH + "/{connection}")
    async def zuora_callout_for(request: Request, connection: str) -> JSONResponse:
        """Callouts for a stored connection: point that tenant's callout template here."""
        return await receive(request, connection)

    return web


def _settings() -> Settings:
    from shared import ports

    return ports.settings()


def _ledger() -> Ledger:
    from shared import ports

    return ports.ledger()


async def _read_at_most(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to be longer than ``limit`` bytes (from
    its Content-Length, or while it streams in): an oversized body is never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


app = create_app()
