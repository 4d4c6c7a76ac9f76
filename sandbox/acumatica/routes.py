"""The URL table of the sandbox (moto ``urls.py``): template, methods and the handler of each route.

Templates are paths below the site path (``app._SitePath`` strips it). Order matters: Starlette
takes the first match, so ``swagger.json`` comes before the endpoint's catch-all and that before
the catch-all for anything else under ``/entity``. The control plane (``control.py``) adds the
``/_sandbox`` routes; the ``LicenceGate`` decides which of these routes are licensed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from sandbox.acumatica.handlers import AcumaticaHandlers

Handler = Callable[[AcumaticaHandlers, Request], Awaitable[Response]]
ALL_VERBS = ("GET", "PUT", "POST", "DELETE")


@dataclass(frozen=True)
class Route:
    template: str
    methods: tuple[str, ...]
    handler: Handler  # an AcumaticaHandlers method, bound to the app's handlers by create_app


ROUTES: tuple[Route, ...] = (
    Route("/entity", ("GET",), AcumaticaHandlers.discovery),
    Route("/entity/auth/login", ("POST",), AcumaticaHandlers.login),
    Route("/entity/auth/logout", ("POST",), AcumaticaHandlers.logout),
    Route("/entity/{name}/{version}/swagger.json", ("GET",), AcumaticaHandlers.swagger),
    Route("/entity/{name}/{version}/{rest:path}", ALL_VERBS, AcumaticaHandlers.entity),
    Route("/entity/{rest:path}", ALL_VERBS, AcumaticaHandlers.unknown),
    Route("/identity/connect/token", ("POST",), AcumaticaHandlers.token),
    Route("/identity/.well-known/openid-configuration", ("GET",), AcumaticaHandlers.openid_configuration),
)
