"""Stored rows, the wrapped-value request parser and the response renderer (acumatica-api.md section 3).

Requests: every field is ``{"value": X}``; ``id``, ``rowNumber`` and ``delete`` are bare; an
unwrapped or unconvertible known field is a 400 with ``modelState``; unknown fields are ignored.
Responses: every top-level field is returned, a null as ``{}``; detail collections and linked
entities only when ``$expand`` names them; ``id``, ``rowNumber``, ``note``, ``custom`` and
``_links`` always; date-only fields as midnight with the server offset; decimals as numbers.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.acumatica.entities import EntitySpec, FieldSpec, Kind, ObjectSpec, in_version
from sandbox.acumatica.errors import model_state


@dataclass
class Row:
    """One stored record, detail line or linked entity. ``values`` is keyed by storage attribute."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    values: dict[str, Any] = field(default_factory=dict)
    collections: dict[str, list[Row]] = field(default_factory=dict)
    links: dict[str, Row] = field(default_factory=dict)
    note: str = ""
    custom: dict[str, dict[str, Any]] = field(default_factory=dict)

    def clone(self) -> Row:
        return copy.deepcopy(self)

    def lines(self, attr: str) -> list[Row]:
        return self.collections.setdefault(attr, [])

    def link(self, attr: str) -> Row:
        return self.links.setdefault(attr, Row())


@dataclass
class Parsed:
    """A request record after unwrapping: only what the client sent (omitted means unchanged)."""

    id: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # contract field name -> python value
    note: str | None = None
    delete: bool = False
    collections: dict[str, list[Parsed]] = field(default_factory=dict)
    links: dict[str, Parsed] = field(default_factory=dict)
    custom: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Problems:
    """Business-validation errors: a top-level message and field errors by path.

    A path is ``(field,)``, ``(link, field)`` or ``(collection, line_id, field)``.
    """

    top: list[str] = field(default_factory=list)
    fields: dict[tuple[str, ...], str] = field(default_factory=dict)

    def add(self, path: tuple[str, ...], message: str) -> None:
        self.fields.setdefault(path, message)

    def __bool__(self) -> bool:
        return bool(self.top or self.fields)


# --- parsing -------------------------------------------------------------------------------


def _json_repr(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def convert(kind: Kind, value: Any, tz: timezone) -> Any:
    """A wrapped JSON value as a python value of ``kind``; ``ValueError`` if it cannot be converted."""
    if value is None:
        return None
    if kind is Kind.STRING:
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ValueError
    if kind is Kind.DECIMAL:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError from exc
        if not number.is_finite():
            raise ValueError
        return number
    if kind in (Kind.INT, Kind.SHORT):
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ValueError
    if kind is Kind.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError
    if kind in (Kind.DATE, Kind.DATETIME):
        if not isinstance(value, str):
            raise ValueError
        text = value.strip()
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        if kind is Kind.DATE:
            # A date sent with an offset is read in the server's zone (pitfall 4).
            return moment.astimezone(tz).date() if moment.tzinfo else moment.date()
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    if kind is Kind.GUID:
        if not isinstance(value, str):
            raise ValueError
        return str(uuid.UUID(value))
    raise ValueError  # pragma: no cover - every kind is handled above


def parse_entity(spec: EntitySpec, body: Any, tz: timezone) -> Parsed:
    """Unwrap a request body; raise the 400 ``modelState`` failure for malformed fields."""
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        raise model_state({"entity": ["The request body must be a JSON object."]})
    parsed = _parse_object(spec.obj, body, "", errors, tz)
    if errors:
        raise model_state(errors)
    return parsed


def _problem(errors: dict[str, list[str]], path: str, message: str) -> None:
    errors.setdefault(f"entity{'.' + path if path else ''}", []).append(message)


def _parse_object(
    spec: ObjectSpec, data: dict[str, Any], path: str, errors: dict[str, list[str]], tz: timezone
) -> Parsed:
    parsed = Parsed()
    for key, raw in data.items():
        where = f"{path}.{key}" if path else key
        if key == "id":
            if raw is not None and not isinstance(raw, str):
                _problem(errors, where, f"Error converting value {_json_repr(raw)} to type 'System.Guid'.")
            elif raw:
                try:
                    parsed.id = str(uuid.UUID(raw))
                except ValueError:
                    _problem(
                        errors, where, f"Error converting value {_json_repr(raw)} to type 'System.Guid'."
                    )
            continue
        if key == "delete":
            parsed.delete = raw is True
            continue
        if key in ("rowNumber", "_links", "files", "error"):
            continue
        if key == "note":
            if raw is None:
                continue
            if not isinstance(raw, dict):
                _problem(errors, where, _wrapper_message(raw, "StringValue", where))
            elif "value" in raw:
                parsed.note = "" if raw["value"] is None else str(raw["value"])
            continue
        if key == "custom":
            _parse_custom(raw, where, errors, parsed)
            continue
        spec_field = spec.field(key)
        if spec_field is not None:
            _parse_field(spec_field, raw, where, errors=errors, parsed=parsed, tz=tz)
            continue
        collection = spec.collection(key)
        if collection is not None:
            if not isinstance(raw, list):
                _problem(
                    errors, where, f"Cannot deserialize the current JSON value into a list. Path '{where}'."
                )
                continue
            lines = []
            for index, item in enumerate(raw):
                item_path = f"{where}[{index}]"
                if not isinstance(item, dict):
                    _problem(errors, item_path, f"Cannot deserialize {_json_repr(item)} into a record.")
                    continue
                lines.append(_parse_object(collection.item, item, item_path, errors, tz))
            parsed.collections[key] = lines
            continue
        link = spec.link(key)
        if link is not None:
            if not isinstance(raw, dict):
                _problem(
                    errors, where, f"Cannot deserialize {_json_repr(raw)} into a record. Path '{where}'."
                )
                continue
            parsed.links[key] = _parse_object(link.item, raw, where, errors, tz)
            continue
        # Unknown (non-contract) names are ignored, as the real server does (section 3.1).
    return parsed


def _wrapper_message(raw: Any, wrapper: str, where: str) -> str:
    return (
        f"Error converting value {_json_repr(raw)} to type 'PX.Api.ContractBased.Models.{wrapper}'. "
        f"Path '{where}'."
    )


def _parse_field(
    spec: FieldSpec,
    raw: Any,
    where: str,
    *,
    errors: dict[str, list[str]],
    parsed: Parsed,
    tz: timezone,
) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        # Strict wrapping: the real server's model binder refuses a bare scalar (section 3.3).
        _problem(errors, where, _wrapper_message(raw, spec.kind.wrapper, where))
        return
    if "value" not in raw:
        return  # {} or {"error": ...}: nothing to change
    try:
        parsed.values[spec.name] = convert(spec.kind, raw["value"], tz)
    except ValueError:
        _problem(
            errors,
            f"{where}.value",
            f"Could not convert {_json_repr(raw['value'])} to {spec.kind.wrapper}. Path '{where}.value'.",
        )


def _parse_custom(raw: Any, where: str, errors: dict[str, list[str]], parsed: Parsed) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        _problem(errors, where, f"Cannot deserialize {_json_repr(raw)} into custom fields.")
        return
    for view, fields in raw.items():
        if not isinstance(fields, dict):
            _problem(errors, f"{where}.{view}", "Custom fields must be grouped by view.")
            continue
        for name, wrapped in fields.items():
            if not isinstance(wrapped, dict):
                _problem(errors, f"{where}.{view}.{name}", _wrapper_message(wrapped, "CustomField", name))
                continue
            if "value" in wrapped:
                parsed.custom.setdefault(view, {})[name] = wrapped["value"]


# --- rendering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderContext:
    """How to render: the endpoint base path, the server zone and the query's shape options."""

    base: str  # "/{site}/entity/Default/24.200.001"
    tz: timezone
    select: frozenset[str] | None = None  # names and "Collection/Field" paths
    expand: frozenset[str] = frozenset()  # "Details", "MainContact", "MainContact/Address", "files"
    custom: tuple[tuple[str, str], ...] = ()  # ("Document", "UsrField")
    version: str = ""  # the endpoint version: fields its contract lacks are not rendered


def to_json(spec: FieldSpec, value: Any, tz: timezone) -> Any:
    """A stored value as the JSON inside ``{"value": ...}`` (labels, dates, decimals)."""
    if value is None:
        return None
    if spec.labels is not None:
        return spec.labels.get(value, value)
    if spec.kind is Kind.DECIMAL:
        return float(value)
    if spec.kind is Kind.DATE:
        offset = datetime(2000, 1, 1, tzinfo=tz).strftime("%z")
        return f"{value.isoformat()}T00:00:00{offset[:3]}:{offset[3:]}"
    if spec.kind is Kind.DATETIME:
        moment: datetime = value
        return moment.astimezone(tz).isoformat(timespec="milliseconds")
    return value


def render_entity(
    entity: EntitySpec,
    row: Row,
    ctx: RenderContext,
    *,
    row_number: int = 1,
    problems: Problems | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The response record; with ``problems``, the 422 body (``error`` at top and on fields)."""
    forced = frozenset(path[0] for path in (problems.fields if problems else {}) if len(path) > 1)
    out = _render_object(entity.obj, row, ctx, row_number=row_number, forced=forced, overrides=overrides)
    out["_links"] = {
        "self": f"{ctx.base}/{entity.name}/{row.id}",
        "files:put": f"{ctx.base}/files/{entity.graph}/{entity.view}/{row.id}/{{filename}}",
    }
    if problems:
        _attach(out, problems)
    return out


def _selected(ctx: RenderContext, prefix: str, name: str) -> bool:
    """Whether ``$select`` keeps scalar field ``name`` of the object at ``prefix`` ("" or "Details/")."""
    if ctx.select is None:
        return True
    if not prefix:
        return name in ctx.select
    inner = {
        path[len(prefix) :] for path in ctx.select if path.startswith(prefix) and len(path) > len(prefix)
    }
    return not inner or name in inner


def _container_selected(ctx: RenderContext, prefix: str, name: str) -> bool:
    """Whether ``$select`` keeps an expanded collection or link (itself or one of its fields named)."""
    if ctx.select is None:
        return True
    full = f"{prefix}{name}"
    if any(path == full or path.startswith(f"{full}/") for path in ctx.select):
        return True
    return bool(prefix) and not any(path.startswith(prefix) for path in ctx.select)


def _render_object(
    spec: ObjectSpec,
    row: Row,
    ctx: RenderContext,
    *,
    prefix: str = "",
    row_number: int = 1,
    forced: frozenset[str] = frozenset(),
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    overrides = overrides or {}
    out: dict[str, Any] = {"id": row.id, "rowNumber": row_number, "note": {"value": row.note}}
    for spec_field in spec.fields:
        if not in_version(spec_field, ctx.version) or not _selected(ctx, prefix, spec_field.name):
            continue
        if spec_field.name in overrides:
            value = overrides[spec_field.name]
            out[spec_field.name] = {} if value is None else {"value": value}
            continue
        value = to_json(spec_field, row.values.get(spec_field.key), ctx.tz)
        out[spec_field.name] = {} if value is None else {"value": value}
    for collection in spec.collections:
        path = f"{prefix}{collection.name}"
        if collection.name in forced:
            pass
        elif path not in ctx.expand or not _container_selected(ctx, prefix, collection.name):
            continue
        lines = [
            line
            for line in row.collections.get(collection.attr, [])
            if not collection.shows or collection.shows(line)
        ]
        rendered = []
        for number, line in enumerate(lines, start=1):
            item = _render_object(collection.item, line, ctx, prefix=f"{path}/", row_number=number)
            item["custom"] = {}
            if f"{path}/files" in ctx.expand:
                item["files"] = []
            rendered.append(item)
        out[collection.name] = rendered
    for link in spec.links:
        path = f"{prefix}{link.name}"
        if link.name in forced:
            pass
        elif path not in ctx.expand or not _container_selected(ctx, prefix, link.name):
            continue
        linked = row.links.get(link.attr) or Row(id=str(uuid.uuid5(uuid.NAMESPACE_URL, row.id + link.name)))
        item = _render_object(link.item, linked, ctx, prefix=f"{path}/")
        item["custom"] = {}
        out[link.name] = item
    out["custom"] = _render_custom(row, ctx) if not prefix else {}
    if not prefix and "files" in ctx.expand:
        out["files"] = []
    return out


def custom_type(value: Any) -> str:
    """The custom-field type name a stored custom value is read back as."""
    if isinstance(value, bool):
        return "CustomBooleanField"
    if isinstance(value, (int, float)):
        return "CustomDecimalField"
    return "CustomStringField"


def _render_custom(row: Row, ctx: RenderContext) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    for view, name in ctx.custom:
        value = row.custom.get(view, {}).get(name)
        wrapped: dict[str, Any] = {"type": custom_type(value)}
        if value is not None:
            wrapped["value"] = value
        custom.setdefault(view, {})[name] = wrapped
    return custom


def _attach(out: dict[str, Any], problems: Problems) -> None:
    for path, message in problems.fields.items():
        target: Any = out
        if len(path) == 1:
            target.setdefault(path[0], {})["error"] = message
        elif len(path) == 2:
            target.setdefault(path[0], {}).setdefault(path[1], {})["error"] = message
        else:
            for line in target.get(path[0], []):
                if line.get("id") == path[1]:
                    line.setdefault(path[2], {})["error"] = message
    # The error key comes first in the real body; rebuild so it leads after id/rowNumber.
    top = " ".join(problems.top)
    items = list(out.items())
    out.clear()
    for key, value in items:
        out[key] = value
        if key == "rowNumber":
            out["error"] = top


def plain(spec: ObjectSpec, row: Row, tz: timezone) -> dict[str, Any]:
    """A stored row as unwrapped JSON with every collection and link (the control plane's view)."""
    out: dict[str, Any] = {"id": row.id}
    for spec_field in spec.fields:
        out[spec_field.name] = to_json(spec_field, row.values.get(spec_field.key), tz)
    for collection in spec.collections:
        lines = [
            line
            for line in row.collections.get(collection.attr, [])
            if not collection.shows or collection.shows(line)
        ]
        out[collection.name] = [plain(collection.item, line, tz) for line in lines]
    for link in spec.links:
        if link.attr in row.links:
            out[link.name] = plain(link.item, row.links[link.attr], tz)
    if row.note:
        out["note"] = row.note
    if row.custom:
        out["custom"] = row.custom
    return out


def today(tz: timezone, now: float) -> date:
    return datetime.fromtimestamp(now, tz).date()
