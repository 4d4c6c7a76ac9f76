"""Zuora's own API description as a checker of the sandbox's traffic (:mod:`sandbox.contract`).

The description is Zuora's official Python SDK, ``zuora-sdk`` (its ``zuora_sdk.api`` operations and
``zuora_sdk.models`` are generated from Zuora's OpenAPI document). For each operation the SDK's
own request builder (``_<operation>_serialize``) is run once with marker values, which yields its
method, path template, path/query/header/form parameter names and body; the public method's
signature gives each parameter's type and limits, and its ``_response_types_map`` the model of
each answer status.

A request is matched to an operation by method and path template (a literal segment beats a
parameter: ``/v1/credit-memos/bulk`` is not ``/v1/credit-memos/{creditMemoKey}``), then checked:
declared query parameters only (with their types and limits: ``pageSize`` 1..50), Zuora's own
headers (``Zuora-*``, ``Idempotency-Key``) only where the operation declares them, the JSON body
against the request model (declared fields only, required fields present, enum values, types).
An answer is checked against the model the operation declares for its status, **closed** to
undeclared fields, with custom fields (``*__c``) the one open door.

The SDK's models do not raise on bad input (they override ``__init__``), so nothing here relies on
``from_dict``: values are walked against each model's declared fields, aliases and types, and
leaf types are validated by pydantic from their JSON text.

Where Zuora's own sources disagree, :data:`TOLERATED` names each case the check accepts both ways
(``docs/vendor-notes.md`` lists them with the sources).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from types import NoneType, UnionType
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, TypeAdapter, ValidationError

from sandbox.contract import Checked, HttpRequest, HttpResponse, decoded, json_body
from sandbox.dropping import DROP_HEADER

API = "zuora"
CUSTOM_FIELD = re.compile(r"__c$")
# HTTP's own headers are not part of an operation's description; Zuora's are.
ZUORA_HEADER = re.compile(r"^(zuora-|idempotency-key$)", re.IGNORECASE)

# Error answers: the SDK declares one model per operation and status (e.g. Object Query 400 ->
# CommonErrorResponse ``{code, message}``), while Zuora's reference pages show other shapes for the
# same answers (Object Query's unified ``{reasons, requestId}``, the gateway's 404/429/5xx, Actions'
# ``{FaultCode, FaultMessage}``). An error answer therefore fits its declared model or one of the
# SDK's own generic error models below; docs/vendor-notes.md lists the cases.
GENERIC_ERROR_MODELS = (
    "CommonResponse",
    "CommonErrorResponse",
    "ProxyUnauthorizedResponse",
    "ErrorResponse",
    "FaultResponse",
)

# Request models that are open by the operation's nature: the fields an Actions update sets are the
# fields of the object type named by the request's ``type`` (Zuora's reference: "objects: the
# zObjects to update, with the fields to change"), which the SDK cannot enumerate.
OPEN_MODELS = frozenset({"ZObjectUpdate"})


@dataclass(frozen=True)
class Tolerance:
    """A (model, field) whose value Zuora's sources give as a JSON number or a decimal string."""

    model: str
    field: str
    why: str


# Where Zuora's documents and the SDK disagree about a value's JSON type; each case is listed in
# docs/vendor-notes.md with its sources.
TOLERATED: tuple[Tolerance, ...] = (
    Tolerance(
        "GetJournalEntryItemResponse",
        "amount",
        "SDK: string (format decimal); the reference pages' samples: a JSON number",
    ),
    Tolerance(
        "GetJournalEntryItemResponse",
        "homeCurrencyAmount",
        "SDK: string (format decimal); the reference pages' samples: a JSON number",
    ),
    Tolerance(
        "CreateJournalEntryRequestItem",
        "amount",
        "SDK: string (format decimal); the reference page's request sample sends a JSON number",
    ),
    Tolerance(
        "CreateJournalEntryRequestItem",
        "homeCurrencyAmount",
        "SDK: string (format decimal); the reference page's request sample sends a JSON number",
    ),
    Tolerance(
        "FailedReason",
        "code",
        "SDK: string; the reference pages' samples and error tables give a JSON number (53100020)",
    ),
)
_TOLERATED = {(t.model, t.field) for t in TOLERATED}

# The largest pageSize Zuora's reference pages allow where its OpenAPI document allows less
# (Object Query 99 vs 50; the v1 finance lists 300 vs 40): either limit is accepted here, and the
# sandbox's ``page_limits`` knob picks which one it enforces (docs/vendor-notes.md).
REFERENCE_PAGE_LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^/object-query/"), 99),
    (re.compile(r"^/v1/(accounting-periods|accounting-codes|journal-entries/journal-runs/[^/]+)$"), 300),
)


# -- the operations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str  # on the wire
    annotation: Any
    required: bool
    many: bool  # a list: the name may repeat


@dataclass(frozen=True)
class Operation:
    """One operation of the SDK: ``CreditMemosApi.bulk_update_credit_memos``."""

    id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    literal_chars: int
    path: Mapping[str, Parameter]
    query: Mapping[str, Parameter]
    headers: Mapping[str, Parameter]  # lower-cased wire name
    form: Mapping[str, Parameter]
    body: Parameter | None
    content_type: str | None
    responses: Mapping[str, str | None]  # "200" -> model name (None: no body)


class _FakeApiClient:
    """Stands in for the SDK's ``ApiClient`` so a ``_serialize`` method reports what it would send."""

    def param_serialize(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def select_header_accept(self, accepts: Sequence[str]) -> str | None:
        return accepts[0] if accepts else None

    def select_header_content_type(self, content_types: Sequence[str]) -> str | None:
        return content_types[0] if content_types else None


class _FakeApi:
    api_client = _FakeApiClient()


class _Marker(str):
    """A marker value standing in for a parameter; ``.value`` as an enum parameter has one."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str(self)


def _marker(name: str) -> str:
    return _Marker(f"\x00{name}\x00")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``Optional``/``Annotated`` wrappers, whether None was allowed)."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, UnionType):
            args = [a for a in typing.get_args(annotation) if a is not NoneType]
            if len(args) < len(typing.get_args(annotation)):
                optional = True
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation, optional


def _is_list(annotation: Any) -> bool:
    inner, _ = _unwrap_optional(annotation)
    return typing.get_origin(inner) in (list, Sequence)


def _response_maps(api_class: type) -> dict[str, dict[str, str | None]]:
    """``{method name: {status: model}}`` read from each method's ``_response_types_map`` literal."""
    tree = _module_tree(api_class.__module__)
    found: dict[str, dict[str, str | None]] = {}
    for node in _functions(tree):
        for statement in node.body:
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and statement.target.id == "_response_types_map"
                and isinstance(statement.value, ast.Dict)
            ):
                found[node.name] = {
                    str(ast.literal_eval(k)): ast.literal_eval(v)
                    for k, v in zip(statement.value.keys, statement.value.values, strict=True)
                    if k is not None
                }
    return found


@cache
def _module_tree(module: str) -> ast.Module:
    return ast.parse(inspect.getsource(importlib.import_module(module)))


def _functions(tree: ast.Module) -> Iterable[ast.FunctionDef]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))


def _template_pattern(template: str) -> tuple[re.Pattern[str], int]:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$"), sum(len(p) for p in parts if not p.startswith("{"))


def _parameter_reader(public: Any) -> typing.Callable[[str, str], Parameter]:
    """``(wire name, python name) -> Parameter`` from the public method's signature."""
    hints = typing.get_type_hints(public, include_extras=True)
    signature = inspect.signature(public)

    def parameter(wire: str, python: str) -> Parameter:
        annotation = hints.get(python, Any)
        default = signature.parameters[python].default if python in signature.parameters else None
        return Parameter(wire, annotation, default is inspect.Parameter.empty, _is_list(annotation))

    return parameter


def _operations_of(api_class: type) -> Iterable[Operation]:
    responses = _response_maps(api_class)
    for name, serialize in inspect.getmembers(api_class, inspect.isfunction):
        if not (name.startswith("_") and name.endswith("_serialize")):
            continue
        public_name = name[1 : -len("_serialize")]
        public = getattr(api_class, public_name, None)
        if public is None:
            continue
        names = [p for p in inspect.signature(serialize).parameters if p != "self"]
        sent = serialize(_FakeApi(), **{p: None if p.startswith("_") else _marker(p) for p in names})
        by_marker = {_marker(p): p for p in names}
        parameter = _parameter_reader(public)

        path = {w: parameter(w, by_marker[v]) for w, v in sent["path_params"].items() if v in by_marker}
        query = {w: parameter(w, by_marker[v]) for w, v in sent["query_params"] if v in by_marker}
        headers = {
            w.lower(): parameter(w, by_marker[v]) for w, v in sent["header_params"].items() if v in by_marker
        }
        form = {w: parameter(w, by_marker[v]) for w, v in sent["post_params"] if v in by_marker}
        body = None
        if sent["body"] in by_marker:
            body = parameter("body", by_marker[sent["body"]])
        pattern, literal = _template_pattern(sent["resource_path"])
        yield Operation(
            id=f"{api_class.__name__}.{public_name}",
            method=sent["method"].upper(),
            template=sent["resource_path"],
            pattern=pattern,
            literal_chars=literal,
            path=path,
            query=query,
            headers=headers,
            form=form,
            body=body,
            content_type=sent["header_params"].get("Content-Type"),
            responses=responses.get(public_name, {}),
        )


@cache
def operations() -> tuple[Operation, ...]:
    """Every operation of the SDK."""
    import zuora_sdk.api

    found: list[Operation] = []
    for name in sorted(dir(zuora_sdk.api)):
        api_class = getattr(zuora_sdk.api, name)
        if isinstance(api_class, type) and name.endswith("Api"):
            found.extend(_operations_of(api_class))
    return tuple(found)


@cache
def _by_method() -> dict[str, tuple[Operation, ...]]:
    table: dict[str, list[Operation]] = {}
    for op in operations():
        table.setdefault(op.method, []).append(op)
    return {m: tuple(sorted(ops, key=lambda o: -o.literal_chars)) for m, ops in table.items()}


def find_operation(method: str, path: str) -> Operation | None:
    """The SDK operation for ``method path`` (the most literal template that matches)."""
    for op in _by_method().get(method.upper(), ()):
        if op.pattern.match(path):
            return op
    return None


@cache
def operation(op_id: str) -> Operation:
    for op in operations():
        if op.id == op_id:
            return op
    raise KeyError(op_id)


@cache
def model(name: str) -> Any:
    """The type a response map names: a model (``BulkCreditMemosResponse``) or a type expression
    over models (``List[SaveResult]``, ``Dict[str, object]``)."""
    import zuora_sdk.models

    namespace: dict[str, Any] = {"List": list, "Dict": dict, "str": str, "object": object, "bytearray": bytes}
    namespace.update(vars(zuora_sdk.models))
    return eval(name, {"__builtins__": {}}, namespace)  # noqa: S307 - the SDK's own literal type names


# -- values against types ------------------------------------------------------------------------


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _json_text(value: Any) -> str:
    return json.dumps(value, default=lambda v: float(v) if isinstance(v, Decimal) else str(v))


def _is_number_type(annotation: Any) -> bool:
    inner, _ = _unwrap_optional(annotation)
    if inner in (int, float, Decimal):
        return True
    if typing.get_origin(inner) in (typing.Union, UnionType):
        return all(_is_number_type(a) for a in typing.get_args(inner) if a is not NoneType)
    return False


def _is_str_type(annotation: Any) -> bool:
    inner, _ = _unwrap_optional(annotation)
    return inner is str


def _decimal_text(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return Decimal(value).is_finite()
    except InvalidOperation:
        return False


@dataclass
class _Walk:
    """Walks a JSON value against an annotation; ``problems`` collects what does not fit."""

    closed: bool = True
    require: bool = True
    problems: list[str] = field(default_factory=list)

    def check(self, value: Any, annotation: Any, where: str, *, owner: str = "", name: str = "") -> None:
        if annotation is Any or annotation is object:
            return
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base = typing.get_args(annotation)[0]
            if _leafish(base):
                self._leaf(value, annotation, where, owner=owner, name=name)
            else:
                self.check(value, base, where, owner=owner, name=name)
            return
        if origin in (typing.Union, UnionType):
            arms = typing.get_args(annotation)
            if value is None:
                if NoneType not in arms:
                    self.problems.append(f"{where}: null is not allowed")
                return
            best: list[str] | None = None
            for arm in arms:
                if arm is NoneType:
                    continue
                trial = _Walk(self.closed, self.require)
                trial.check(value, arm, where, owner=owner, name=name)
                if not trial.problems:
                    return
                if best is None or len(trial.problems) < len(best):
                    best = trial.problems
            self.problems.extend(best or [f"{where}: {value!r} fits none of {annotation}"])
            return
        if value is None:
            self.problems.append(f"{where}: null where {_name(annotation)} is declared")
            return
        if origin in (list, Sequence):
            if not isinstance(value, list):
                self.problems.append(f"{where}: a list is declared, got {type(value).__name__}")
                return
            (item,) = typing.get_args(annotation) or (Any,)
            for index, element in enumerate(value):
                self.check(element, item, f"{where}[{index}]")
            return
        if origin in (dict, Mapping):
            if not isinstance(value, dict):
                self.problems.append(f"{where}: an object is declared, got {type(value).__name__}")
                return
            args = typing.get_args(annotation)
            item = args[1] if len(args) == 2 else Any
            for key, element in value.items():
                self.check(element, item, f"{where}.{key}")
            return
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            self.model(value, annotation, where)
            return
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            allowed = [e.value for e in annotation]
            if value not in allowed:
                self.problems.append(f"{where}: {value!r} is not one of {allowed} ({annotation.__name__})")
            return
        self._leaf(value, annotation, where, owner=owner, name=name)

    def _leaf(self, value: Any, annotation: Any, where: str, *, owner: str, name: str) -> None:
        if (owner, name) in _TOLERATED:
            if _is_number_type(annotation) and _decimal_text(value):
                return
            if (
                _is_str_type(annotation)
                and isinstance(value, int | float | Decimal)
                and not isinstance(value, bool)
            ):
                return
        inner, _ = _unwrap_optional(annotation)
        if inner is date and isinstance(value, str) and len(value) > 10:
            self.problems.append(f"{where}: a date (YYYY-MM-DD) is declared, got {value!r}")
            return
        try:
            _adapter(annotation).validate_json(_json_text(value))
        except ValidationError as exc:
            first = exc.errors()[0]
            self.problems.append(f"{where}: {value!r}: {first['msg']} (declared {_name(annotation)})")

    def model(self, value: Any, cls: type[BaseModel], where: str) -> None:
        if not isinstance(value, dict):
            self.problems.append(
                f"{where}: an object ({cls.__name__}) is declared, got {type(value).__name__}"
            )
            return
        fields = _fields(cls)
        closed = self.closed and cls.__name__ not in OPEN_MODELS
        for key, item in value.items():
            found = fields.get(key)
            if found is None:
                if closed and not CUSTOM_FIELD.search(key):
                    self.problems.append(f"{where}.{key}: not a field of {cls.__name__}")
                continue
            python_name, annotation, _ = found
            self.check(item, annotation, f"{where}.{key}", owner=cls.__name__, name=key)
            for validator in _validators(cls).get(python_name, ()):
                if item is None:
                    continue
                try:
                    validator(item)
                except (ValueError, TypeError) as exc:
                    self.problems.append(f"{where}.{key}: {item!r}: {exc}")
        if self.require:
            missing = [alias for alias, (_, _, required) in fields.items() if required and alias not in value]
            if missing:
                self.problems.append(f"{where}: {cls.__name__} requires {', '.join(sorted(missing))}")


def _leafish(annotation: Any) -> bool:
    return not (
        typing.get_origin(annotation) in (list, dict, typing.Union, UnionType, Sequence, Mapping)
        or (isinstance(annotation, type) and issubclass(annotation, BaseModel | Enum))
    )


def _name(annotation: Any) -> str:
    inner, optional = _unwrap_optional(annotation)
    text = getattr(inner, "__name__", None) or str(inner).replace("typing.", "")
    return text + (" or null" if optional else "")


@cache
def _fields(cls: type[BaseModel]) -> dict[str, tuple[str, Any, bool]]:
    """``{json key: (python name, annotation, required)}`` of a model (its declared fields only)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    found: dict[str, tuple[str, Any, bool]] = {}
    for python_name, info in cls.model_fields.items():
        if python_name == "additional_properties":
            continue
        annotation = hints.get(python_name, info.annotation)
        found[info.alias or python_name] = (python_name, annotation, info.is_required())
    return found


@cache
def _validators(cls: type[BaseModel]) -> dict[str, tuple[Any, ...]]:
    table: dict[str, list[Any]] = {}
    for decorator in cls.__pydantic_decorators__.field_validators.values():
        for name in decorator.info.fields:
            table.setdefault(name, []).append(decorator.func)
    return {k: tuple(v) for k, v in table.items()}


def check_value(
    value: Any, annotation: Any, where: str = "body", *, closed: bool = True, require: bool = True
) -> list[str]:
    """What in ``value`` does not fit ``annotation`` (a model class, list, enum, leaf type)."""
    walk = _Walk(closed=closed, require=require)
    walk.check(value, annotation, where)
    return walk.problems


# -- the checker ----------------------------------------------------------------------------------


def _coerce_text(text: str, annotation: Any) -> Any:
    """A query/header/form value (always text) as the JSON value it stands for."""
    inner, _ = _unwrap_optional(annotation)
    if inner is bool:
        return {"true": True, "false": False}.get(text, text)
    if inner in (int, float):
        try:
            return int(text) if inner is int else float(text)
        except ValueError:
            return text
    return text


def _check_parameters(
    given: Sequence[tuple[str, str]], declared: Mapping[str, Parameter], kind: str
) -> list[str]:
    problems: list[str] = []
    grouped: dict[str, list[str]] = {}
    for name, text in given:
        grouped.setdefault(name, []).append(text)
    for name, values in grouped.items():
        parameter = declared.get(name)
        if parameter is None:
            problems.append(f"{kind} parameter {name!r} is not declared (declared: {sorted(declared)})")
            continue
        if parameter.many:
            inner, _ = _unwrap_optional(parameter.annotation)
            (item,) = typing.get_args(inner) or (Any,)
            value: Any = [_coerce_text(v, item) for v in values]
        else:
            if len(values) > 1:
                problems.append(f"{kind} parameter {name!r} is given {len(values)} times")
            value = _coerce_text(values[-1], parameter.annotation)
        problems.extend(check_value(value, parameter.annotation, f"{kind} {name}"))
    for name, parameter in declared.items():
        if parameter.required and name not in grouped:
            problems.append(f"required {kind} parameter {name!r} is missing")
    return problems


def _reference_page_size(request: HttpRequest, problem: str) -> bool:
    """Whether ``problem`` is a pageSize above the OpenAPI limit but within the reference pages'."""
    if not problem.startswith("query pageSize:") or "less than or equal" not in problem:
        return False
    sizes = [v for k, v in request.query if k == "pageSize"]
    if not sizes or not sizes[-1].isdigit():
        return False
    return any(
        pattern.match(request.path) and int(sizes[-1]) <= limit for pattern, limit in REFERENCE_PAGE_LIMITS
    )


def _response_model(op: Operation, status: int) -> tuple[str | None, bool]:
    """(model name, declared?) for an answer status."""
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in op.responses:
            return op.responses[key], True
    return None, False


class ZuoraChecker:
    """Checks sandbox exchanges against zuora-sdk's operations and models."""

    api = API

    def __init__(self) -> None:
        # Reading the SDK's operations parses its API modules: seconds (over 30 on a busy
        # machine). Done here, where the app is built, not in the event loop at the first request,
        # which would hold every exchange of the sandbox meanwhile and time its clients out.
        _by_method()

    def check_request(self, request: HttpRequest) -> Checked:
        op = find_operation(request.method, request.path)
        if op is None:
            return Checked(None, (f"no Zuora operation is {request.method} {request.path}",))
        problems = [
            p
            for p in _check_parameters(request.query, op.query, "query")
            if not _reference_page_size(request, p)
        ]
        zuora_headers = [(k.lower(), v) for k, v in request.headers if ZUORA_HEADER.match(k)]
        if zuora_headers:
            declared = {k: p for k, p in op.headers.items() if ZUORA_HEADER.match(k)}
            problems += _check_parameters(zuora_headers, declared, "header")
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        body = decoded(request.body, request.header("content-encoding"))
        if op.form:
            if content_type != "application/x-www-form-urlencoded":
                problems.append(
                    f"the body must be a form (application/x-www-form-urlencoded), not {content_type!r}"
                )
            problems += _check_parameters(parse_qsl(body.decode(), keep_blank_values=True), op.form, "form")
        elif op.body is not None:
            value, problem = json_body(body)
            if problem:
                problems.append(problem)
            elif value is None:
                if op.body.required:
                    problems.append("the request body is required")
            else:
                if content_type != "application/json":
                    problems.append(f"a JSON body is declared, the request says {content_type!r}")
                problems += check_value(value, op.body.annotation, "body")
        elif body.strip():
            problems.append("this operation takes no request body")
        return Checked(op.id, tuple(problems))

    def check_response(self, request: HttpRequest, response: HttpResponse) -> Checked:
        op = find_operation(request.method, request.path)
        if op is None:
            return Checked(None)  # already reported on the request
        if response.header(DROP_HEADER.decode()) is not None:
            return Checked(op.id)  # never sent: the connection is dropped instead (a fault)
        body = decoded(response.body, response.header("content-encoding"))
        value, problem = json_body(body)
        if problem:
            return Checked(op.id, (f"HTTP {response.status}: {problem}",))
        name, declared = _response_model(op, response.status)
        where = f"HTTP {response.status} body"
        if response.status < 400:
            if not declared:
                return Checked(
                    op.id, (f"HTTP {response.status} is not a declared answer ({sorted(op.responses)})",)
                )
            if name is None:
                return Checked(op.id, () if value is None else (f"HTTP {response.status} declares no body",))
            if value is None:
                return Checked(
                    op.id, (f"HTTP {response.status} declares a {name} body; the answer is empty",)
                )
            return Checked(op.id, tuple(check_value(value, model(name), where, require=False)))
        if value is None:
            return Checked(op.id)
        candidates = ([name] if name else []) + [m for m in GENERIC_ERROR_MODELS if m != name]
        attempts = [check_value(value, model(m), where, require=False) for m in candidates]
        if any(not found for found in attempts):
            return Checked(op.id)
        best = min(attempts, key=len)
        return Checked(op.id, (f"HTTP {response.status} fits none of {candidates}", *best))
