"""Acumatica's published endpoint definitions as the judge of the Acumatica sandbox's traffic.

:class:`AcumaticaChecker` implements :class:`~sandbox.contract.Checker`. A request under
``/entity/<Name>/<Version>/`` is judged by that endpoint's vendored definition
(:mod:`sandbox.acumatica.vendored`):

* the operation is found by method and path template, the key template ``{ids}`` taking the
  slash-delimited key values the vendor describes and ``{id}`` a session id (a UUID); none found
  is a problem;
* every query parameter must be declared for the operation and match its schema;
* a body must be declared, sent as a declared media type and match its schema;
* the answer's status must be declared for the operation, and its body and headers must match
  what is declared for that status (no body where none is declared).

The vendor's schemas leave objects open to unknown names; the checker closes them
(``additionalProperties: false`` on every object that does not say otherwise, ``allOf`` merged
first), keeping only the vendor's own open doors: what the ``Entity`` base schema declares
(``id``, ``rowNumber``, ``note``, ``custom``, ``error``, ``files``), the ``delete`` and
``_links`` members the vendor's own C# client model adds to it, the custom fields and the
``HttpError`` extras. Value wrappers (``StringValue``, ``DecimalValue``, ...) are closed too, so
a field must be ``{"value": <the wrapper's type>}`` (``error`` allowed) or ``{}``.

What the definitions do not describe (sign-in, token, ``GET /entity``, ``swagger.json``, polling
a long-running action, answers no operation declares: 403, 404, 411, 429, gateway errors) is
checked against the rules docs/vendor-notes.md ("Acumatica") records with their sources.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from sandbox.acumatica.vendored import load_definition
from sandbox.contract import Checked, HttpRequest, HttpResponse, decoded, json_body
from sandbox.dropping import DROP_HEADER

API = "acumatica"
JSON_MEDIA = frozenset({"application/json", "text/json"})
SCHEMAS = "#/components/schemas/"

# The members the vendor's C# client model adds to the swagger's Entity base schema
# (Acumatica.RESTClient.ContractBasedApi/Model/EntityBase/Entity.cs and FileApi/Model/Links.cs).
ENTITY_EXTRAS: Mapping[str, Any] = {
    "delete": {"type": "boolean"},
    "_links": {
        "type": "object",
        "properties": {"self": {"type": "string"}, "files:put": {"type": "string"}},
        "additionalProperties": False,
    },
}
# Schemas left as open as the vendor wrote them: custom fields (a discriminated family the
# validator cannot dispatch on) and the Web API error, which declares its own extras.
OPEN_SCHEMAS = frozenset({"CustomField", "HttpError"})

# ISO 8601 date-times as .NET reads and writes them: an offset is optional (the vendor's own
# client writes an unspecified-kind DateTime without one; vendor-notes "Dates").
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?$")
_HTTP_ERROR_KEYS = frozenset(
    {"message", "exceptionMessage", "exceptionType", "stackTrace", "modelState", "messageDetail"}
)


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _format_checker() -> FormatChecker:
    checker = FormatChecker(())
    checker.checkers = dict(oas30_format_checker.checkers)
    checker.checkers["date-time"] = (_date_time, ())
    return checker


FORMATS = _format_checker()


# -- the definition, normalised ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One declared response: its body schema (None: no body) and header names."""

    schema: dict[str, Any] | None
    headers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Operation:
    """One declared operation of an endpoint definition."""

    id: str
    method: str
    template: str
    query: Mapping[str, dict[str, Any]]
    body: dict[str, Any] | None
    media: frozenset[str]
    responses: Mapping[str, Answer]

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/"))


def _rewrite_refs(node: Any) -> Any:
    """Swagger 2.0 schemas in OpenAPI 3.0 form: ``#/definitions/`` refs, ``x-nullable``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/definitions/"):
                out[key] = SCHEMAS + value.removeprefix("#/definitions/")
            elif key == "x-nullable":
                out["nullable"] = value
            else:
                out[key] = _rewrite_refs(value)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _resolve(document: Mapping[str, Any], node: Any) -> Any:
    """``node`` with a top-level local ``$ref`` followed (parameters, responses, request bodies)."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target: Any = document
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _closed(name: str, schemas: Mapping[str, Any]) -> dict[str, Any]:
    """Schema ``name`` with ``allOf`` merged and every object closed (see module docstring)."""
    schema = schemas[name]
    if name in OPEN_SCHEMAS:
        return dict(schema)
    merged = _merge(schema, schemas)
    if name == "Entity":
        merged = {**merged, "properties": {**merged.get("properties", {}), **ENTITY_EXTRAS}}
    closed: dict[str, Any] = _close(merged)
    return closed


def _merge(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> dict[str, Any]:
    if "allOf" not in schema:
        return dict(schema)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for raw in schema["allOf"]:
        part = raw
        if "$ref" in raw:
            name = raw["$ref"].removeprefix(SCHEMAS)
            part = _merge(schemas[name], schemas)
            if name == "Entity":
                part = {**part, "properties": {**part.get("properties", {}), **ENTITY_EXTRAS}}
        properties.update(part.get("properties", {}))
        required += [r for r in part.get("required", []) if r not in required]
    merged: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        merged["required"] = required
    return merged


def _close(schema: Any) -> Any:
    if not isinstance(schema, dict) or "$ref" in schema:
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _close(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _close(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _close(out["additionalProperties"])
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@dataclass
class Definition:
    """One endpoint's operations and closed schemas, ready to validate against."""

    endpoint: str
    operations: list[Operation]
    schemas: dict[str, Any]
    _validators: dict[str, Any] = field(default_factory=dict)

    def errors(self, schema: Mapping[str, Any], instance: Any) -> list[str]:
        """What is wrong with ``instance`` under ``schema`` (refs into this definition)."""
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            root = {**schema, "components": {"schemas": self.schemas}}
            validator = self._validators[key] = OAS30Validator(root, format_checker=FORMATS)
        found = []
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            found.append(f"body{where}: {error.message}")
        return found

    def match(self, method: str, rest: str) -> tuple[Operation | None, list[Operation]]:
        """The operation for ``method`` on ``rest`` (``/Invoice/Invoice/AR000001``) and every
        operation whose path matches whatever the method (to tell a wrong method apart)."""
        segments = tuple(s for s in rest.strip("/").split("/") if s != "") or ("",)
        ranked: list[tuple[int, Operation]] = []
        for operation in self.operations:
            score = _path_score(operation.segments, segments)
            if score is not None:
                ranked.append((score, operation))
        if not ranked:
            return None, []
        best = max(score for score, _ in ranked)
        on_path = [op for score, op in ranked if score == best]
        chosen = next((op for op in on_path if op.method == method), None)
        if chosen is None:
            # A literal path that lacks the method may still leave a template path that has it.
            chosen = next(
                (op for score, op in sorted(ranked, key=lambda r: -r[0]) if op.method == method), None
            )
        return chosen, on_path


def _path_score(template: tuple[str, ...], segments: tuple[str, ...]) -> int | None:
    """How well ``segments`` fit ``template`` (more literal segments: higher), or None."""
    score = 0
    for index, part in enumerate(template):
        if part == "{ids}":
            # The vendor's ids: the key values, slash-delimited (1 or more segments).
            return score if len(segments) > index else None
        if index >= len(segments):
            return None
        if part == "{id}":
            try:
                uuid.UUID(segments[index])
            except ValueError:
                return None
            score += 1
        elif part.startswith("{"):
            score += 0
        elif part == segments[index]:
            score += 10
        else:
            return None
    return score if len(segments) == len(template) else None


@lru_cache(maxsize=8)
def definition(endpoint: str) -> Definition | None:
    """``endpoint``'s vendored definition, normalised; None when none is vendored."""
    document = load_definition(endpoint)
    if document is None:
        return None
    if "swagger" in document:
        document = _rewrite_refs(document)
        raw_schemas = document.get("definitions", {})
    else:
        raw_schemas = document.get("components", {}).get("schemas", {})
    schemas = {name: _closed(name, raw_schemas) for name in raw_schemas}
    operations = list(_operations(document))
    return Definition(endpoint=endpoint, operations=operations, schemas=schemas)


def _operations(document: Mapping[str, Any]) -> Iterator[Operation]:
    swagger2 = "swagger" in document
    for template, item in document["paths"].items():
        for method, spec in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            query: dict[str, dict[str, Any]] = {}
            body: dict[str, Any] | None = None
            media: frozenset[str] = frozenset()
            for raw in spec.get("parameters", []):
                parameter = _resolve(document, raw)
                if parameter["in"] == "query":
                    schema = parameter.get("schema") or {
                        k: parameter[k] for k in ("type", "format", "enum", "items") if k in parameter
                    }
                    query[parameter["name"]] = schema
                elif parameter["in"] == "body":
                    body = parameter["schema"]
                    media = frozenset(spec.get("consumes", ()))
            if "requestBody" in spec:
                request_body = _resolve(document, spec["requestBody"])
                content = request_body.get("content", {})
                media = frozenset(content)
                body = next((c["schema"] for c in content.values() if "schema" in c), None)
            responses = {}
            for status, raw in spec.get("responses", {}).items():
                response = _resolve(document, raw)
                if swagger2:
                    schema = response.get("schema")
                else:
                    content = response.get("content", {})
                    schema = next((c["schema"] for c in content.values() if "schema" in c), None)
                responses[status] = Answer(schema, frozenset(h.lower() for h in response.get("headers", {})))
            yield Operation(
                id=spec.get("operationId", f"{method.upper()} {template}"),
                method=method.upper(),
                template=template,
                query=query,
                body=body,
                media=media,
                responses=responses,
            )


# -- the checker ---------------------------------------------------------------------------------

_ENTITY_PATH = re.compile(r"^/entity/(?P<name>[^/]+)/(?P<version>[^/]+)(?P<rest>/.*)?$")
_STATUS_POLL = re.compile(r"^/(?P<entity>[^/]+)/(?P<action>[^/]+)/status/(?P<id>[^/]+)$")

LOGIN_KEYS = frozenset({"name", "password", "tenant", "company", "branch", "locale"})
TOKEN_GRANTS: Mapping[str, frozenset[str]] = {
    "password": frozenset({"username", "password", "scope"}),
    "refresh_token": frozenset({"refresh_token", "scope"}),
    "authorization_code": frozenset({"code", "redirect_uri", "code_verifier"}),
}
TOKEN_CLIENT_KEYS = frozenset({"grant_type", "client_id", "client_secret"})
TOKEN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
# OpenID Connect Discovery 1.0 section 3 (required) and the metadata names it and RFC 8414 define.
OIDC_REQUIRED = frozenset(
    {
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    }
)
OIDC_KNOWN = OIDC_REQUIRED | frozenset(
    {
        "userinfo_endpoint",
        "registration_endpoint",
        "scopes_supported",
        "response_modes_supported",
        "grant_types_supported",
        "acr_values_supported",
        "token_endpoint_auth_methods_supported",
        "claims_supported",
        "code_challenge_methods_supported",
        "end_session_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "frontchannel_logout_supported",
        "backchannel_logout_supported",
    }
)
GATEWAY_STATUSES = frozenset({502, 503, 504})


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


class AcumaticaChecker:
    """Checks Acumatica traffic against the vendored endpoint definitions (module docstring).

    ``definitions`` maps an endpoint (``Default/24.200.001``) to its :class:`Definition`; by
    default the vendored files are read (once per process) as endpoints are seen.
    """

    api = API

    def __init__(self, definitions: Callable[[str], Definition | None] = definition) -> None:
        self._definitions = definitions

    # -- requests --------------------------------------------------------------------------------

    def check_request(self, request: HttpRequest) -> Checked:
        path = request.path
        if path == "/entity/auth/login":
            return Checked("auth/login", tuple(self._login_request(request)))
        if path == "/entity/auth/logout":
            return Checked("auth/logout", tuple(self._logout_request(request)))
        if path == "/identity/connect/token":
            return Checked("identity/token", tuple(self._token_request(request)))
        if path in ("/identity/.well-known/openid-configuration", "/entity"):
            name = "identity/openid-configuration" if path.startswith("/identity") else "GET entity"
            return Checked(name, tuple(self._bare_get(request)))
        found = _ENTITY_PATH.match(path)
        if found is None:
            return Checked(None, (f"{request.method} {path} is not part of Acumatica's REST API",))
        endpoint = f"{found['name']}/{found['version']}"
        rest = found["rest"] or "/"
        if rest == "/swagger.json":
            return Checked("swagger.json", tuple(self._swagger_request(request)))
        spec = self._definitions(endpoint)
        if spec is None:
            # Nothing to judge the request by; the answer shows whether the sandbox served it.
            return Checked(None)
        polled = self._poll_target(spec, request.method, rest)
        if polled is not None:
            problems = list(self._no_query(request, allowed=()))
            if request.body.strip():
                problems.append("a status poll has no body")
            return Checked(polled, tuple(problems))
        operation, on_path = spec.match(request.method, rest)
        if operation is None:
            if on_path:
                declared = ", ".join(sorted({op.method for op in on_path}))
                return Checked(None, (f"{request.method} is not declared for {rest} (declared: {declared})",))
            return Checked(None, (f"{request.method} {rest} matches no path of {endpoint}",))
        return Checked(operation.id, tuple(self._operation_request(spec, operation, request)))

    def _operation_request(
        self, spec: Definition, operation: Operation, request: HttpRequest
    ) -> Iterator[str]:
        for name, value in request.query:
            schema = operation.query.get(name)
            if schema is None:
                yield f"query parameter {name} is not declared for {operation.id}"
                continue
            yield from (
                p.replace("body", f"query {name}", 1)
                for p in spec.errors(schema, _query_value(schema, value))
            )
        body = decoded(request.body, request.header("content-encoding"))
        if operation.body is None:
            if body.strip():
                yield f"{operation.id} declares no request body"
            return
        media = _media(request.header("content-type"))
        if operation.media and media not in operation.media:
            yield f"Content-Type {media or '(none)'} is not one of {', '.join(sorted(operation.media))}"
        parsed, problem = json_body(body)
        if problem:
            yield problem
            return
        if parsed is None:
            yield f"{operation.id} requires a body"
            return
        yield from spec.errors(operation.body, parsed)

    def _poll_target(self, spec: Definition, method: str, rest: str) -> str | None:
        """``GET {Entity}/{Action}/status/{id}`` of a declared action: the operation's name."""
        found = _STATUS_POLL.match(rest)
        if method != "GET" or found is None:
            return None
        action_path = f"/{found['entity']}/{found['action']}"
        if not any(op.template == action_path and op.method == "POST" for op in spec.operations):
            return None
        return f"{found['entity']}_{found['action']}_Status"

    def _login_request(self, request: HttpRequest) -> Iterator[str]:
        if request.method != "POST":
            yield f"{request.method} is not the sign-in method (POST)"
        media = _media(request.header("content-type"))
        body = decoded(request.body, request.header("content-encoding"))
        if media == "application/x-www-form-urlencoded":
            fields: Any = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        elif media in JSON_MEDIA:
            fields, problem = json_body(body)
            if problem:
                yield problem
                return
        else:
            yield f"Content-Type {media or '(none)'} is not JSON or a form"
            return
        if not isinstance(fields, dict):
            yield "the credentials must be an object"
            return
        for key in sorted(set(fields) - LOGIN_KEYS):
            yield f"credentials: {key} is not a sign-in field ({', '.join(sorted(LOGIN_KEYS))})"
        for key in ("name", "password"):
            if not isinstance(fields.get(key), str):
                yield f"credentials: {key} (a string) is required"
        for key in LOGIN_KEYS & set(fields):
            if not isinstance(fields[key], str):
                yield f"credentials: {key} must be a string"
        yield from self._no_query(request, allowed=())

    def _logout_request(self, request: HttpRequest) -> Iterator[str]:
        if request.method != "POST":
            yield f"{request.method} is not the sign-out method (POST)"
        if request.body.strip():
            yield "sign-out takes no body"
        if request.header("content-length") is None and request.header("transfer-encoding") is None:
            yield "sign-out must carry Content-Length (IIS answers 411 without it)"
        yield from self._no_query(request, allowed=())

    def _token_request(self, request: HttpRequest) -> Iterator[str]:
        if request.method != "POST":
            yield f"{request.method} is not the token method (POST)"
        media = _media(request.header("content-type"))
        if media != "application/x-www-form-urlencoded":
            yield f"a token request is a form (application/x-www-form-urlencoded), not {media or '(none)'}"
            return
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type", "")
        allowed = TOKEN_GRANTS.get(grant)
        if allowed is None:
            yield f"grant_type {grant!r} is not one Acumatica documents ({', '.join(sorted(TOKEN_GRANTS))})"
            return
        for key in sorted(set(form) - allowed - TOKEN_CLIENT_KEYS):
            yield f"{key} is not a parameter of the {grant} grant"
        basic = (request.header("authorization") or "").lower().startswith("basic ")
        if not basic and "client_id" not in form:
            yield "the client is named neither by client_id nor by HTTP Basic authentication"
        required = {"password": ("username", "password"), "refresh_token": ("refresh_token",)}
        for key in required.get(grant, ("code", "redirect_uri")):
            if not form.get(key):
                yield f"the {grant} grant requires {key}"
        yield from self._no_query(request, allowed=())

    def _bare_get(self, request: HttpRequest) -> Iterator[str]:
        if request.method != "GET":
            yield f"{request.method} {request.path} is not declared (GET only)"
        if request.body.strip():
            yield f"GET {request.path} takes no body"
        yield from self._no_query(request, allowed=())

    def _swagger_request(self, request: HttpRequest) -> Iterator[str]:
        yield from self._bare_get(request) if request.method != "GET" else ()
        # The documented optional parameter: the tenant whose definition to describe.
        yield from self._no_query(request, allowed=("company",))

    @staticmethod
    def _no_query(request: HttpRequest, *, allowed: Iterable[str]) -> Iterator[str]:
        names = set(allowed)
        for name, _ in request.query:
            if name not in names:
                yield f"query parameter {name} is not declared for {request.method} {request.path}"

    # -- responses -------------------------------------------------------------------------------

    def check_response(self, request: HttpRequest, response: HttpResponse) -> Checked:
        path = request.path
        if response.header(DROP_HEADER.decode()) is not None:
            return Checked(None)  # never sent: the connection is dropped instead (a fault)
        status = response.status
        if path == "/entity/auth/login":
            return Checked("auth/login", tuple(self._login_response(response)))
        if path == "/entity/auth/logout":
            return Checked("auth/logout", tuple(self._logout_response(response)))
        if path == "/identity/connect/token":
            return Checked("identity/token", tuple(self._token_response(response)))
        if path == "/identity/.well-known/openid-configuration":
            return Checked("identity/openid-configuration", tuple(self._oidc_response(response)))
        if path == "/entity":
            return Checked("GET entity", tuple(self._discovery_response(response)))
        found = _ENTITY_PATH.match(path)
        if found is None:
            return Checked(None, tuple(self._fallback(response, "an unknown path")))
        endpoint = f"{found['name']}/{found['version']}"
        rest = found["rest"] or "/"
        if rest == "/swagger.json":
            return Checked("swagger.json", tuple(self._swagger_response(endpoint, response)))
        spec = self._definitions(endpoint)
        if spec is None:
            # An endpoint without a vendored definition may only be refused (discovery's 404):
            # serving it would be traffic nothing can check.
            if status != 404:
                return Checked(None, (f"endpoint {endpoint} has no vendored definition, yet was served",))
            return Checked(None, tuple(_http_error(response)))
        poll = self._poll_target(spec, request.method, rest)
        if poll is not None:
            return Checked(poll, tuple(self._poll_response(response)))
        operation, _ = spec.match(request.method, rest)
        if operation is None:
            return Checked(None, tuple(self._fallback(response, f"{request.method} {rest}")))
        answer = operation.responses.get(str(status))
        if answer is None:
            return Checked(operation.id, tuple(self._fallback(response, operation.id)))
        problems = list(self._declared(spec, operation, answer, response))
        if "_InvokeAction_" in operation.id:
            problems += self._action_location(found["name"], found["version"], rest, response)
        return Checked(operation.id, tuple(problems))

    def _declared(
        self, spec: Definition, operation: Operation, answer: Answer, response: HttpResponse
    ) -> Iterator[str]:
        body = decoded(response.body, response.header("content-encoding"))
        status = response.status
        if answer.schema is None:
            if body.strip():
                yield f"{operation.id} declares no body for {status}, but one was sent"
            return
        media = _media(response.header("content-type"))
        if media not in JSON_MEDIA:
            yield f"{status} of {operation.id} must be JSON (application/json or text/json), not {media or '(none)'}"
            return
        parsed, problem = json_body(body)
        if problem:
            yield problem
            return
        yield from spec.errors(answer.schema, parsed)

    @staticmethod
    def _action_location(name: str, version: str, rest: str, response: HttpResponse) -> list[str]:
        """InvokeAction's Location (the vendor's client reads it on 202 and 204 alike): 202 ->
        the operation's status URL; 204 -> the GET URL of the processed record."""
        if response.status not in (202, 204):
            return []
        location = response.header("location")
        if not location:
            return [f"{response.status} of an action must carry a Location header"]
        parsed = urlsplit(location)
        marker = f"/entity/{name}/{version}/"
        index = parsed.path.find(marker)
        if index < 0 or parsed.query or parsed.fragment:
            return [f"Location {location} is not a URL under {marker}"]
        entity, action = rest.strip("/").split("/", 1)
        tail = parsed.path[index + len(marker) :].split("/")
        if response.status == 202:
            if len(tail) != 4 or tail[:3] != [entity, action, "status"] or not _is_uuid(tail[3]):
                return [f"Location {location} of 202 is not {marker}{entity}/{action}/status/<id>"]
        elif len(tail) != 2 or tail[0] != entity or not _is_uuid(tail[1]):
            return [f"Location {location} of 204 is not the processed record's URL {marker}{entity}/<id>"]
        return []

    def _poll_response(self, response: HttpResponse) -> Iterator[str]:
        if response.status in (202, 204):
            if response.body.strip():
                yield f"a status poll's {response.status} has no body"
            return
        if response.status in (401, 500):
            yield from _http_error(response)
            return
        yield from self._fallback(response, "a status poll")

    def _login_response(self, response: HttpResponse) -> Iterator[str]:
        status = response.status
        if status == 204:
            if response.body.strip():
                yield "a successful sign-in (204) has no body"
            if response.header("set-cookie") is None:
                yield "a successful sign-in sets the session cookies"
            return
        if status in (400, 500):
            yield from _http_error(response)
            return
        yield from self._fallback(response, "sign-in")

    def _logout_response(self, response: HttpResponse) -> Iterator[str]:
        if response.status == 204:
            if response.body.strip():
                yield "sign-out (204) has no body"
            return
        if response.status == 411:
            return  # IIS: a POST without Content-Length (vendor-notes)
        yield from self._fallback(response, "sign-out")

    def _token_response(self, response: HttpResponse) -> Iterator[str]:
        body, problem = json_body(decoded(response.body, response.header("content-encoding")))
        if problem or not isinstance(body, dict):
            yield problem or "the token endpoint answers a JSON object"
            return
        if response.status == 200:
            for key in sorted(
                set(body) - {"access_token", "expires_in", "token_type", "refresh_token", "scope", "id_token"}
            ):
                yield f"token: {key} is not a member of a token response"
            if not isinstance(body.get("access_token"), str):
                yield "token: access_token (a string) is required"
            if not isinstance(body.get("token_type"), str):
                yield "token: token_type (a string) is required"
            if "expires_in" in body and (
                isinstance(body["expires_in"], bool) or not isinstance(body["expires_in"], int)
            ):
                yield "token: expires_in must be a number of seconds"
            return
        if 400 <= response.status < 500:
            for key in sorted(set(body) - {"error", "error_description", "error_uri"}):
                yield f"token error: {key} is not a member of an OAuth error"
            if body.get("error") not in TOKEN_ERRORS:
                yield f"token error: error {body.get('error')!r} is not an RFC 6749 error code"
            return
        yield f"the token endpoint answered {response.status}"

    def _oidc_response(self, response: HttpResponse) -> Iterator[str]:
        if response.status != 200:
            yield from self._fallback(response, "OpenID configuration")
            return
        body, problem = json_body(response.body)
        if problem or not isinstance(body, dict):
            yield problem or "the OpenID configuration is a JSON object"
            return
        for key in sorted(OIDC_REQUIRED - set(body)):
            yield f"OpenID configuration: {key} is required"
        for key in sorted(set(body) - OIDC_KNOWN):
            yield f"OpenID configuration: {key} is not a discovery metadata name"

    def _discovery_response(self, response: HttpResponse) -> Iterator[str]:
        if response.status != 200:
            yield from self._fallback(response, "GET /entity")
            return
        body, problem = json_body(response.body)
        if problem or not isinstance(body, dict):
            yield problem or "GET /entity answers a JSON object"
            return
        for key in sorted(set(body) - {"version", "endpoints"}):
            yield f"GET /entity: {key} is not a member of VersionAndEndpoints"
        version = body.get("version")
        if not isinstance(version, dict):
            yield "GET /entity: version must be an object"
        else:
            for key, value in version.items():
                if key not in ("acumaticaBuildVersion", "oemBuildVersion", "databaseVersion"):
                    yield f"GET /entity: version.{key} is not a member of Version"
                elif not isinstance(value, str):
                    yield f"GET /entity: version.{key} must be a string"
        endpoints = body.get("endpoints")
        if not isinstance(endpoints, list):
            yield "GET /entity: endpoints must be a list"
            return
        for index, row in enumerate(endpoints):
            if not isinstance(row, dict) or set(row) - {"name", "version", "href"}:
                yield f"GET /entity: endpoints[{index}] must hold name, version and href only"
            elif not all(isinstance(v, str) for v in row.values()):
                yield f"GET /entity: endpoints[{index}] members must be strings"

    def _swagger_response(self, endpoint: str, response: HttpResponse) -> Iterator[str]:
        if response.status != 200:
            yield from self._fallback(response, "swagger.json")
            return
        body, problem = json_body(response.body)
        if problem or not isinstance(body, dict):
            yield problem or "swagger.json is a JSON object"
            return
        if "openapi" not in body and "swagger" not in body:
            yield "swagger.json is neither an OpenAPI nor a Swagger document"
        if (body.get("info") or {}).get("title") != endpoint:
            yield f"swagger.json describes {(body.get('info') or {}).get('title')!r}, not {endpoint}"
        suffix = f"/entity/{endpoint}"
        if "openapi" in body:
            urls = [s.get("url", "") for s in body.get("servers") or [] if isinstance(s, dict)]
            if not urls or not all(u.rstrip("/").endswith(suffix) for u in urls):
                yield f"swagger.json servers {urls} do not point at {suffix}"
        elif not str(body.get("basePath", "")).rstrip("/").endswith(suffix):
            yield f"swagger.json basePath {body.get('basePath')!r} does not point at {suffix}"

    def _fallback(self, response: HttpResponse, what: str) -> Iterator[str]:
        """Answers no operation declares, checked against the documented shapes (vendor-notes)."""
        status = response.status
        media = _media(response.header("content-type"))
        if status in (401, 403, 404, 500) or (status == 429 and media in JSON_MEDIA):
            # Web API HttpError (401: not signed in; 403: no rights on the form; 404: no such
            # endpoint, entity or action; 429 JSON: the sign-in limit; 500: server error).
            yield from _http_error(response)
        elif status == 429:
            if media != "text/plain" or not response.body.strip():
                yield f"a licence decline (429) is a plain-text message, not {media or '(none)'}"
        elif status in GATEWAY_STATUSES:
            if media in JSON_MEDIA:
                yield f"a gateway {status} comes from IIS or a proxy as text, not JSON"
        else:
            yield f"{what} does not declare status {status}"


def _http_error(response: HttpResponse) -> Iterator[str]:
    """An ASP.NET Web API HttpError body, checked as the definitions declare it."""
    media = _media(response.header("content-type"))
    if media not in JSON_MEDIA:
        yield f"{response.status} must be an HttpError (JSON), not {media or '(none)'}"
        return
    body, problem = json_body(decoded(response.body, response.header("content-encoding")))
    if problem:
        yield problem
        return
    if not isinstance(body, dict):
        yield f"{response.status}: an HttpError is an object"
        return
    if not isinstance(body.get("message"), str):
        yield f"{response.status}: HttpError.message (a string) is missing"
    for key, value in body.items():
        if key in ("modelState",):
            if not isinstance(value, dict) or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value.values()
            ):
                yield f"{response.status}: HttpError.modelState maps names to lists of strings"
        elif key in _HTTP_ERROR_KEYS:
            if value is not None and not isinstance(value, str):
                yield f"{response.status}: HttpError.{key} must be a string"
        elif not isinstance(value, dict):
            # The definition's additionalProperties: {"type": "object"} (e.g. innerException).
            yield f"{response.status}: HttpError.{key} must be an object"


def _query_value(schema: Mapping[str, Any], value: str) -> Any:
    """A query string value as the JSON value its schema expects (integers parsed)."""
    if schema.get("type") == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
