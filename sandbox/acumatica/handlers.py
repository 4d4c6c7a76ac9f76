"""Request handlers (moto's ``responses.py``): parse the HTTP request, call the backend, render.

No business rule and no state lives here. Each handler reads paths, query options, headers and
bodies the way the real server does (acumatica-api.md sections 1, 2 and 4), calls one backend
method, and turns the result into the real status, headers and JSON. The URL table is
``routes.py``; failures are rendered by ``errors.render_failure``; injected faults come from
``faults.inject``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.acumatica import errors
from sandbox.acumatica.backend import AcumaticaBackend, QueryOptions, RequestContext, Session
from sandbox.acumatica.entities import ENTITIES
from sandbox.acumatica.faults import inject
from sandbox.acumatica.vendored import swagger_document
from sandbox.dropping import dropped

COOKIE_AUTH = ".ASPXAUTH"
COOKIE_SESSION = "ASP.NET_SessionId"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise errors.model_state({"entity": ["The request body is empty."]})
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise errors.model_state(
            {"entity": [f"Unexpected character encountered while parsing value: {exc}"]}
        ) from exc


async def _form_or_json(request: Request) -> dict[str, Any]:
    raw = (await request.body()).decode("utf-8", "replace")
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return dict(parse_qsl(raw, keep_blank_values=True))
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.model_state({"credentials": ["The request body is not valid JSON."]}) from exc
    if not isinstance(body, dict):
        raise errors.model_state({"credentials": ["The request body must be a JSON object."]})
    return body


class AcumaticaHandlers:
    """The handlers of the Acumatica routes (``routes.ROUTES``), over one backend."""

    def __init__(self, backend: AcumaticaBackend) -> None:
        self.backend = backend

    # ---------------------------------------------------------------- instance level

    async def discovery(self, request: Request) -> Response:
        """``GET /entity``: the build and the one endpoint this instance serves (section 1.3)."""
        config = self.backend.config
        self.backend.count_call("GET entity")
        root = str(request.base_url).rstrip("/") + config.site_path
        return JSONResponse(
            {
                "version": {"acumaticaBuildVersion": config.build, "databaseVersion": config.build},
                "endpoints": [
                    {
                        "name": config.endpoint_name,
                        "version": config.endpoint_version,
                        "href": f"{root}/entity/{config.endpoint}/",
                    }
                ],
            }
        )

    async def login(self, request: Request) -> Response:
        """``POST /entity/auth/login``: 204 with the session cookies (section 2.1)."""
        self.backend.count_call("POST auth/login")
        body = await _form_or_json(request)
        early = await self._faults(request.method, "auth")
        if early is not None:
            return early
        session = self.backend.login(body)
        response = Response(status_code=204)
        path = self.backend.config.site_path or "/"
        response.set_cookie(COOKIE_AUTH, session.token, path=path, httponly=True)
        response.set_cookie(COOKIE_SESSION, session.session_id, path="/", httponly=True, samesite="lax")
        response.set_cookie("UserBranch", "1", path=path)
        return response

    async def logout(self, request: Request) -> Response:
        """``POST /entity/auth/logout``: 204; skips the licence queue (section 2.1)."""
        if "content-length" not in request.headers and "transfer-encoding" not in request.headers:
            # IIS refuses a POST without Content-Length (integrator S4).
            return Response("<h2>Length Required</h2>", status_code=411, media_type="text/html")
        self.backend.logout(request.cookies.get(COOKIE_AUTH), _bearer(request))
        response = Response(status_code=204)
        response.delete_cookie(COOKIE_AUTH, path=self.backend.config.site_path or "/")
        return response

    async def token(self, request: Request) -> Response:
        """``POST /identity/connect/token``: password and refresh_token grants (section 2.2)."""
        raw = (await request.body()).decode("utf-8", "replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        basic = None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
            except ValueError:
                decoded = ":"
            user, _, secret = decoded.partition(":")
            basic = (user, secret)
        status, body = self.backend.issue_token(form, basic)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    async def openid_configuration(self, request: Request) -> Response:
        """The OpenID Connect discovery document (section 2.2): the endpoints Acumatica
        documents plus the members OpenID Connect Discovery 1.0 requires (vendor-notes)."""
        root = str(request.base_url).rstrip("/") + self.backend.config.site_path + "/identity"
        return JSONResponse(
            {
                "issuer": root,
                "authorization_endpoint": f"{root}/connect/authorize",
                "token_endpoint": f"{root}/connect/token",
                "userinfo_endpoint": f"{root}/connect/userinfo",
                "revocation_endpoint": f"{root}/connect/revocation",
                "jwks_uri": f"{root}/.well-known/openid-configuration/jwks",
                "response_types_supported": ["code", "token", "id_token", "code id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "grant_types_supported": ["authorization_code", "implicit", "password", "refresh_token"],
                "scopes_supported": [
                    "api",
                    "offline_access",
                    "api:concurrent_access",
                    "openid",
                    "email",
                    "profile",
                ],
            }
        )

    async def swagger(self, request: Request) -> Response:
        """``GET /entity/{name}/{version}/swagger.json[?company=Tenant]``: the endpoint's
        definition (Acumatica's own, vendored) with its server pointing here (section 1.1).

        As S5 observed, it needs a session; ``company`` names the tenant to describe (the
        signed-in user's when left out), and naming it is enough without one (vendor-notes).
        """
        config = self.backend.config
        params = request.path_params
        endpoint = f"{params['name']}/{params['version']}"
        self.backend.count_call("GET swagger.json")
        root = str(request.base_url).rstrip("/") + config.site_path
        document = swagger_document(endpoint, f"{root}/entity/{endpoint}")
        if endpoint != config.endpoint or document is None:
            raise errors.no_resource(str(request.url))
        company = request.query_params.get("company")
        if company is None:
            self.backend.authenticate(request.cookies.get(COOKIE_AUTH), _bearer(request))
        elif company != config.tenant:
            raise errors.undefined_company()
        return JSONResponse(document)

    async def unknown(self, request: Request) -> Response:
        """Anything else under ``/entity`` (section 1.3)."""
        raise errors.no_resource(str(request.url))

    # ---------------------------------------------------------------- endpoint level

    async def entity(self, request: Request) -> Response:
        """Every call under ``/entity/{name}/{version}/``: list, get, put, delete, actions, polls."""
        backend = self.backend
        params = request.path_params
        if f"{params['name']}/{params['version']}" != backend.config.endpoint:
            # Only the configured endpoint version resolves (section 1.3).
            raise errors.no_resource(str(request.url))
        parts = [part for part in str(params["rest"]).split("/") if part != ""]
        spec = ENTITIES.get(parts[0]) if parts else None
        if spec is None:
            raise errors.no_resource(str(request.url))
        session = backend.authenticate(request.cookies.get(COOKIE_AUTH), _bearer(request))
        method = request.method
        rest = parts[1:]
        if method == "GET":
            return await self._get(request, spec.name, rest)
        if method == "PUT" and not rest:
            return await self._put(request, spec.name, session)
        if method == "POST" and len(rest) == 1 and rest[0] in spec.actions:
            return await self._action(request, spec.name, rest[0], session)
        if method == "DELETE" and rest:
            backend.count_call(f"DELETE {spec.name}")
            early = await self._faults(method, spec.name)
            if early is not None:
                return early
            backend.delete(spec.name, _keys(rest))
            return Response(status_code=204)
        raise errors.no_resource(str(request.url))

    def _context(self, request: Request, session: Session) -> RequestContext:
        headers = request.headers
        return RequestContext(
            business_date=self.backend.business_date(headers.get("px-cbapibusinessdate")),
            branch=headers.get("px-cbapibranch") or session.branch,
        )

    @staticmethod
    def _options(request: Request) -> QueryOptions:
        query = request.query_params
        return QueryOptions(
            filter=query.get("$filter"),
            select=query.get("$select"),
            expand=query.get("$expand"),
            custom=query.get("$custom"),
            top=query.get("$top"),
            skip=query.get("$skip"),
        )

    async def _faults(self, method: str, entity: str) -> Response | None:
        """Injected faults that act before the work (``faults.inject``): latency, error answers,
        or the response that drops the connection."""
        return await inject(self.backend.faults, method, entity)

    async def _get(self, request: Request, entity: str, rest: list[str]) -> Response:
        backend = self.backend
        spec = ENTITIES[entity]
        if len(rest) == 3 and rest[0] in spec.actions and rest[1] == "status":
            backend.count_call(f"GET {entity}/{rest[0]}/status")
            early = await self._faults("GET", entity)
            if early is not None:
                return early
            done = backend.poll(entity, rest[0], rest[2])
            return Response(status_code=204 if done else 202)
        if rest == ["$adHocSchema"]:
            backend.count_call(f"GET {entity}/$adHocSchema")
            return JSONResponse(backend.ad_hoc_schema(entity))
        backend.count_call(f"GET {entity}" if not rest else f"GET {entity}/key")
        early = await self._faults("GET", entity)
        if early is not None:
            return early
        options = self._options(request)
        if not rest:
            return JSONResponse(backend.list_records(entity, options))
        return JSONResponse(backend.get_record(entity, _keys(rest), options))

    async def _put(self, request: Request, entity: str, session: Session) -> Response:
        backend = self.backend
        backend.count_call(f"PUT {entity}")
        body = await _json_body(request)
        early = await self._faults("PUT", entity)
        if early is not None:
            return early
        result = backend.put(
            entity,
            body,
            self._options(request),
            self._context(request, session),
            if_none_match=request.headers.get("if-none-match", "").strip() == "*",
            if_match=request.headers.get("if-match", "").strip() == "*",
        )
        if result.created and backend.faults.draw(frozenset({"commit_then_drop"}), "PUT", entity):
            # Committed above; now the client never hears of it (section 7).
            return dropped()
        return JSONResponse(result.record)

    async def _action(self, request: Request, entity: str, action: str, session: Session) -> Response:
        backend = self.backend
        backend.count_call(f"POST {entity}/{action}")
        raw = await request.body()
        body: Any = {}
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise errors.model_state({"entity": ["The request body is not valid JSON."]}) from exc
        early = await self._faults("POST", entity)
        if early is not None:
            return early
        operation = backend.invoke(entity, action, body, self._context(request, session))
        base = f"{backend.config.site_path}/entity/{backend.config.endpoint}"
        if operation.polls_left == 0 and operation.state != "running":
            # Finished at once: 204 whose Location is the processed record's GET URL, as the
            # definition declares; the vendor's client reads it and, seeing no action in it,
            # treats the action as complete without polling (vendor-notes "Actions").
            return Response(status_code=204, headers={"Location": f"{base}/{entity}/{operation.row_id}"})
        location = f"{base}/{entity}/{action}/status/{operation.id}"
        return Response(status_code=202, headers={"Location": location})


def _keys(rest: list[str]) -> list[str]:
    """Key values from the URL: slash-separated, or ``|``-separated (section 1.1)."""
    keys: list[str] = []
    for part in rest:
        keys.extend(part.split("|"))
    return keys
