"""The Acumatica sandbox as an ASGI app, and ``run`` for ``ledgerbridge sandbox acumatica``.

The routes are ``routes.ROUTES`` bound to one ``AcumaticaHandlers``, plus the control plane.

Middleware, outermost first: ``ConnectionDropper`` (turns a marked response into a dropped TCP
connection), the site-path prefix (``/AcumaticaERP``-style virtual directories), the vendor
contract check when enabled (:class:`~sandbox.contract.ContractMiddleware` with
:class:`~sandbox.acumatica.contract.AcumaticaChecker`: it sees paths without the site
prefix and the licence's 429s too), then the ``LicenceGate`` (cores, queue, per-minute limit,
counters), then the routes.
"""

from __future__ import annotations

from types import MethodType

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.acumatica.backend import AcumaticaBackend
from sandbox.acumatica.config import (
    DEFAULT_ENDPOINT,
    DEFAULT_PASSWORD,
    DEFAULT_TENANT,
    DEFAULT_USERNAME,
    SandboxConfig,
)
from sandbox.acumatica.control import control_router
from sandbox.acumatica.errors import ApiFailure, render_failure
from sandbox.acumatica.handlers import AcumaticaHandlers
from sandbox.acumatica.licence import ASGIApp, LicenceGate, Receive, Scope, Send
from sandbox.acumatica.routes import ROUTES
from sandbox.contract import ContractMiddleware, contracts_enabled
from sandbox.dropping import ConnectionDropper
from sandbox.server import serve_forever


class _SitePath:
    """Serve the API under the configured site path (read per request, so the control plane can change it)."""

    def __init__(self, app: ASGIApp, backend: AcumaticaBackend) -> None:
        self.app = app
        self.backend = backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        site = self.backend.config.site_path
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not site or path.startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        if path != site and not path.startswith(f"{site}/"):
            response = JSONResponse({"message": "The resource cannot be found."}, status_code=404)
            await response(scope, receive, send)
            return
        inner = dict(scope)
        inner["path"] = path[len(site) :] or "/"
        inner["raw_path"] = inner["path"].encode()
        await self.app(inner, receive, send)


def _licensed(path: str) -> bool:
    """Every request under ``/entity`` but logout goes through the licence queue (section 5.2)."""
    return (path == "/entity" or path.startswith("/entity/")) and path != "/entity/auth/logout"


def create_app(
    backend: AcumaticaBackend | None = None,
    *,
    endpoint: str = DEFAULT_ENDPOINT,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    tenant: str = DEFAULT_TENANT,
    site_path: str = "",
    contracts: bool | None = None,
) -> FastAPI:
    """The sandbox as an ASGI app.

    Without ``backend``, a fresh seeded one is built that serves only ``endpoint`` and accepts only
    ``username``/``password``/``tenant``. With ``backend``, its own config rules and the keyword
    arguments are ignored. The backend is reachable as ``app.state.backend``. ``contracts``
    checks every exchange against Acumatica's endpoint definitions (None: when
    ``LEDGERBRIDGE_SANDBOX_CONTRACTS`` says so).
    """
    if backend is None:
        backend = AcumaticaBackend(
            SandboxConfig(
                endpoint=endpoint,
                username=username,
                password=password,
                tenant=tenant,
                site_path=site_path,
            )
        )
    app = FastAPI(title="Acumatica sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend
    handlers = AcumaticaHandlers(backend)

    async def on_failure(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiFailure)
        return render_failure(exc)

    app.add_exception_handler(ApiFailure, on_failure)
    for route in ROUTES:
        app.add_api_route(route.template, MethodType(route.handler, handlers), methods=list(route.methods))
    app.include_router(control_router(backend))
    # add_middleware wraps: the last one added is the outermost.
    app.add_middleware(
        LicenceGate, licence=backend.licence, config=lambda: backend.config, licensed=_licensed
    )
    if contracts_enabled() if contracts is None else contracts:
        # Imported here: the checker needs the validator, which only the dev extra installs.
        from sandbox.acumatica.contract import AcumaticaChecker

        app.add_middleware(ContractMiddleware, checker=AcumaticaChecker())
    app.add_middleware(_SitePath, backend=backend)
    app.add_middleware(ConnectionDropper, on_drop=backend.note_drop)
    return app


def run(
    port: int,
    endpoint: str = DEFAULT_ENDPOINT,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    tenant: str = DEFAULT_TENANT,
    *,
    host: str = "127.0.0.1",
    site_path: str = "",
) -> None:
    """Serve the sandbox in the foreground (``ledgerbridge sandbox acumatica --port 8082 ...``)."""
    app = create_app(
        endpoint=endpoint,
        username=username,
        password=password,
        tenant=tenant,
        site_path=site_path,
    )
    serve_forever(app, host=host, port=port)
