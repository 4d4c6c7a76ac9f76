"""The Zuora sandbox as an ASGI app, and ``run`` for ``ledgerbridge sandbox zuora``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response

from sandbox.contract import ContractMiddleware, contracts_enabled
from sandbox.dropping import ConnectionDropper
from sandbox.server import serve_forever

from .backend import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ZuoraBackend
from .callouts import callout_router
from .control import control_router
from .pipeline import dispatch
from .routes import ROUTES, Route
from .seed import Sizes


def _endpoint(backend: ZuoraBackend, route: Route) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await dispatch(backend, route, request)

    endpoint.__name__ = getattr(route.handler, "__name__", "endpoint")
    return endpoint


def create_app(
    backend: ZuoraBackend | None = None,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    seed: int | None = None,
    sizes: Sizes | None = None,
    contracts: bool | None = None,
) -> FastAPI:
    """A Zuora sandbox app around ``backend`` (a new one if None).

    ``client_id``/``client_secret`` are the only credentials ``/oauth/token`` accepts (defaults:
    ``DEFAULT_CLIENT_ID``/``DEFAULT_CLIENT_SECRET``, or the given backend's own). With ``seed``, the
    backend is seeded now and ``POST /_sandbox/reset`` returns to that data. The backend is
    reachable as ``app.state.backend``. With ``contracts`` (default: ``LEDGERBRIDGE_SANDBOX_CONTRACTS``)
    every exchange is checked against zuora-sdk's description (:mod:`sandbox.contract`).
    """
    if backend is None:
        backend = ZuoraBackend(
            client_id=client_id or DEFAULT_CLIENT_ID, client_secret=client_secret or DEFAULT_CLIENT_SECRET
        )
    else:
        if client_id is not None:
            backend.client_id = client_id
        if client_secret is not None:
            backend.client_secret = client_secret
    if seed is not None:
        backend.seed(seed, sizes, startup=True)
    app = FastAPI(
        title="ledgerbridge Zuora sandbox",
        docs_url="/_sandbox/docs",
        redoc_url=None,
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.backend = backend
    if contracts_enabled() if contracts is None else contracts:
        from .contract import ZuoraChecker  # imports zuora-sdk, a development dependency

        app.add_middleware(ContractMiddleware, checker=ZuoraChecker())  # inside gzip: plain bodies
    # Zuora gzips JSON responses over 1000 bytes when asked (section 3).
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    # Outermost: an injected commit_then_drop closes the connection instead of answering (faults.py).
    app.add_middleware(ConnectionDropper)
    for route in ROUTES:
        app.add_api_route(
            route.template, _endpoint(backend, route), methods=[route.method], include_in_schema=False
        )
    app.include_router(control_router(backend))
    app.include_router(callout_router(backend))  # signed callouts to a configured URL (callouts.py)
    return app


DEFAULT_SEED = 1


def run(
    port: int,
    seed: int | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    *,
    host: str = "127.0.0.1",
    sizes: Sizes | None = None,
) -> None:
    """Serve the sandbox in the foreground (``ledgerbridge sandbox zuora --port 8081 --seed N ...``).

    Without ``seed`` the tenant is seeded with ``DEFAULT_SEED`` so a demo always has data (use
    ``create_app()`` for an empty one). Only ``client_id``/``client_secret`` (default
    ``DEFAULT_CLIENT_ID``/``DEFAULT_CLIENT_SECRET``) obtain tokens.
    """
    app = create_app(
        client_id=client_id,
        client_secret=client_secret,
        seed=DEFAULT_SEED if seed is None else seed,
        sizes=sizes,
    )
    serve_forever(app, host=host, port=port)
