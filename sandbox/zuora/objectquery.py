"""Object Query request parsing and record rendering (zuora-api.md section 9).

``parse_query`` turns the query string of ``GET /object-query/<collection>`` into an
``ObjectQuery`` (or raises a category-27 ``ZuoraError`` for anything the real API rejects with 400);
``render`` turns a stored record into the JSON object Zuora returns: camelCase keys with only the
first letter lowered, nulls omitted unless ``includeNullFields=true``, datetimes with the tenant
offset and no millis, expanded children nested and truncated to ``pageSize``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from .errors import ZuoraError, bad_query_parameter
from .formats import decimal, number_json, oq_datetime, parse_date, parse_datetime
from .paging import (
    OQ_DEFAULT_PAGE_SIZE,
    OQ_MAX_PAGE_SIZE,
    OQ_MIN_PAGE_SIZE,
    CursorError,
    SortKey,
    decode_cursor,
    encode_cursor,
    null_first,
)
from .schema import OBJECTS, Endpoint, Kind, ObjectType, Relation, oq_key

OPERATORS = ("EQ", "NE", "LT", "GT", "LE", "GE", "SW", "IN")
EMPTY_STRING = "\x02\x03"  # filter[]=field.EQ:%02%03 means the empty string (section 9.2)
STRING_KINDS = (Kind.STRING, Kind.PICKLIST, Kind.ID)


@dataclass(frozen=True)
class Filter:
    """``<field>.<OP>:<value>``; SQL null semantics: a null field matches only ``EQ:null``/``NE:null``
    inverted (``NE:null`` matches non-null values)."""

    field: str
    kind: Kind
    op: str
    value: Any  # a typed value, None, or a tuple for IN

    def test(self, record: dict[str, Any]) -> bool:
        actual = record.get(self.field)
        if self.value is None and self.op in ("EQ", "NE"):
            return (actual is None) == (self.op == "EQ")
        if actual is None:
            return False
        if self.op == "IN":
            return any(_equal(self.kind, actual, v) for v in self.value)
        if self.op == "EQ":
            return _equal(self.kind, actual, self.value)
        if self.op == "NE":
            return not _equal(self.kind, actual, self.value)
        if self.op == "SW":
            return str(actual).lower().startswith(str(self.value).lower())
        try:
            if self.op == "LT":
                return bool(actual < self.value)
            if self.op == "GT":
                return bool(actual > self.value)
            if self.op == "LE":
                return bool(actual <= self.value)
            return bool(actual >= self.value)
        except TypeError:
            return False


def _equal(kind: Kind, actual: Any, value: Any) -> bool:
    if kind in STRING_KINDS:
        return str(actual).lower() == str(value).lower()  # EQ on strings is case-insensitive
    return bool(actual == value)


@dataclass
class Expansion:
    relation: Relation | None  # None: an allowed expansion the sandbox does not model
    fields: frozenset[str] | None = None  # API names to keep; None = all
    children: dict[str, Expansion] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectQuery:
    filters: tuple[Filter, ...] = ()
    sort_field: str = "UpdatedDate"
    descending: bool = True
    page_size: int = OQ_DEFAULT_PAGE_SIZE
    after: tuple[Any, ...] | None = None
    fields: frozenset[str] | None = None
    expand: dict[str, Expansion] = field(default_factory=dict)
    include_nulls: bool = False

    def sort_key(self, record: dict[str, Any]) -> tuple[Any, ...]:
        if self.sort_field == "Id":
            return (record["Id"],)
        return (null_first(record.get(self.sort_field)), record["Id"])


def parse_query(
    endpoint: Endpoint,
    params: Sequence[tuple[str, str]],
    zone: timezone,
    max_page_size: int = OQ_MAX_PAGE_SIZE,
) -> ObjectQuery:
    """Parse list parameters; raises ``ZuoraError`` (category 20, 23 or 27) as the real API does."""
    obj = endpoint.obj
    filters = tuple(_filter(endpoint, value, zone) for key, value in params if key == "filter[]")
    if endpoint.requires_filter and not filters:
        raise ZuoraError(23, f"filter[] is required for /object-query/{endpoint.path}")
    sort_field, descending = _sort(endpoint, [v for k, v in params if k == "sort[]"])
    page_size = _page_size(params, max_page_size)
    after = None
    cursors = [v for k, v in params if k == "cursor"]
    if cursors:
        after = _cursor(cursors[-1], obj, sort_field, descending, zone)
    base_fields, expand = _fields_and_expand(endpoint, params)
    return ObjectQuery(
        filters, sort_field, descending, page_size, after, base_fields, expand, _include_nulls(params)
    )


def parse_key_query(
    endpoint: Endpoint, params: Sequence[tuple[str, str]], max_page_size: int = OQ_MAX_PAGE_SIZE
) -> ObjectQuery:
    """Parameters of ``GET /object-query/<collection>/{key}``: fields, expansions, nulls, pageSize."""
    base_fields, expand = _fields_and_expand(endpoint, params)
    return ObjectQuery(
        page_size=_page_size(params, max_page_size),
        fields=base_fields,
        expand=expand,
        include_nulls=_include_nulls(params),
    )


def _page_size(params: Sequence[tuple[str, str]], max_page_size: int) -> int:
    values = [v for k, v in params if k == "pageSize"]
    if not values:
        return OQ_DEFAULT_PAGE_SIZE
    try:
        size = int(values[-1])
    except ValueError:
        size = 0
    if not OQ_MIN_PAGE_SIZE <= size <= max_page_size:
        # Out of range is a 400, not a silent default (section 9.2).
        raise ZuoraError(
            20, f"pageSize must be between {OQ_MIN_PAGE_SIZE} and {max_page_size}, got {values[-1]!r}"
        )
    return size


def _include_nulls(params: Sequence[tuple[str, str]]) -> bool:
    values = [v for k, v in params if k == "includeNullFields"]
    if not values:
        return False
    text = values[-1].lower()
    if text not in ("true", "false"):
        raise ZuoraError(20, f"includeNullFields must be true or false, got {values[-1]!r}")
    return text == "true"


def _filter(endpoint: Endpoint, text: str, zone: timezone) -> Filter:
    head, sep, raw = text.partition(":")
    name, dot, op = head.rpartition(".")
    if not sep or not dot:
        raise bad_query_parameter(f"invalid filter {text!r}; expected <field>.<OP>:<value>")
    op = op.upper()
    if op not in OPERATORS:
        raise bad_query_parameter(f"invalid filter operator {op!r} in {text!r}")
    lowered = name.lower()
    if lowered not in endpoint.filterable and lowered not in endpoint.filter_only:
        raise bad_query_parameter(f"field {name!r} is not filterable for {endpoint.path}")
    api_name = endpoint.obj.field_named(lowered)
    if api_name is None:  # pragma: no cover - schema and endpoint lists agree (tested)
        raise bad_query_parameter(f"unknown field {name!r}")
    kind = endpoint.obj.fields[api_name]
    if op == "SW" and kind not in STRING_KINDS:
        raise bad_query_parameter(f"SW needs a string field, not {name!r}")
    try:
        if op == "IN":
            if not (raw.startswith("[") and raw.endswith("]")):
                raise ValueError("IN needs a list like [a,b]")
            items = [item.strip() for item in raw[1:-1].split(",") if item.strip()]
            value: Any = tuple(_value(kind, item, zone) for item in items)
        else:
            value = _value(kind, raw, zone)
    except ValueError as exc:
        raise bad_query_parameter(f"invalid value in filter {text!r}: {exc}") from exc
    if value is None and op not in ("EQ", "NE"):
        raise bad_query_parameter(f"null only works with EQ and NE: {text!r}")
    return Filter(api_name, kind, op, value)


def _value(kind: Kind, raw: str, zone: timezone) -> Any:
    if raw == "null":
        return None
    if raw == EMPTY_STRING:
        return ""
    if kind in STRING_KINDS:
        return raw
    if kind is Kind.INT:
        return int(raw)
    if kind is Kind.DECIMAL:
        return decimal(raw)
    if kind is Kind.BOOL:
        if raw.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return raw.lower() == "true"
    if kind is Kind.DATE:
        return parse_date(raw)
    return parse_datetime(raw, zone)


def _sort(endpoint: Endpoint, values: list[str]) -> tuple[str, bool]:
    if not values:
        return "UpdatedDate", True  # default order, inferred from real cursors (section 9.3)
    if len(values) > 1 or "," in values[0]:
        raise bad_query_parameter("sort[] takes exactly one field")
    name, dot, direction = values[0].rpartition(".")
    if not dot or direction.upper() not in ("ASC", "DESC"):
        raise bad_query_parameter(f"invalid sort {values[0]!r}; expected <field>.ASC or <field>.DESC")
    if name.lower() not in endpoint.filterable:
        raise bad_query_parameter(f"field {name!r} is not sortable for {endpoint.path}")
    api_name = endpoint.obj.field_named(name)
    assert api_name is not None
    return api_name, direction.upper() == "DESC"


def cursor_keys(query: ObjectQuery, record: dict[str, Any], zone: timezone) -> list[SortKey]:
    order = "DESC" if query.descending else "ASC"
    keys = (
        []
        if query.sort_field == "Id"
        else [SortKey(query.sort_field, order, render_value(record.get(query.sort_field), zone))]
    )
    keys.append(SortKey("Id", order, record["Id"]))
    return keys


def next_cursor(query: ObjectQuery, record: dict[str, Any], zone: timezone) -> str:
    return encode_cursor(cursor_keys(query, record, zone))


def _cursor(text: str, obj: ObjectType, sort_field: str, descending: bool, zone: timezone) -> tuple[Any, ...]:
    try:
        keys = decode_cursor(text)
    except CursorError as exc:
        raise bad_query_parameter(str(exc)) from exc
    order = "DESC" if descending else "ASC"
    expected = ["Id"] if sort_field == "Id" else [sort_field, "Id"]
    if [k.field for k in keys] != expected or any(k.order != order for k in keys):
        raise bad_query_parameter("the cursor does not belong to this sort order")
    if sort_field == "Id":
        return (str(keys[0].value),)
    kind = obj.fields[sort_field]
    raw = keys[0].value
    try:
        if raw is None:
            value: Any = None
        elif kind is Kind.DECIMAL:
            value = decimal(raw)
        elif kind is Kind.DATETIME:
            value = parse_datetime(str(raw), zone)
        elif kind is Kind.DATE:
            value = parse_date(str(raw))
        else:
            value = raw
    except ValueError as exc:
        raise bad_query_parameter(f"invalid cursor value: {exc}") from exc
    return (null_first(value), str(keys[1].value))


def _fields_and_expand(
    endpoint: Endpoint, params: Sequence[tuple[str, str]]
) -> tuple[frozenset[str] | None, dict[str, Expansion]]:
    expand: dict[str, Expansion] = {}
    for key, value in params:
        if key != "expand[]":
            continue
        for path in (p.strip().lower() for p in value.split(",") if p.strip()):
            if path not in endpoint.expand:
                raise bad_query_parameter(f"invalid expand[] value {path!r} for {endpoint.path}")
            _add_expansion(expand, endpoint.obj, path.split("."))
    base: frozenset[str] | None = None
    for key, value in params:
        if not key.endswith("fields[]"):
            continue
        prefix = key[: -len("fields[]")].rstrip(".").lower()
        names = [n.strip() for n in value.split(",") if n.strip()]
        if prefix in ("", endpoint.alias):
            base = (base or frozenset()) | _resolve_fields(endpoint.obj, names)
            continue
        node = _find_expansion(expand, prefix.split("."))
        if node is None:
            raise bad_query_parameter(f"{key} refers to an object that is not expanded")
        target = OBJECTS.get(node.relation.target) if node.relation else None
        resolved = _resolve_fields(target, names) if target else frozenset(names)
        node.fields = (node.fields or frozenset()) | resolved
    return base, expand


def _resolve_fields(obj: ObjectType, names: list[str]) -> frozenset[str]:
    out = set()
    for name in names:
        api_name = obj.field_named(name)
        if api_name is None:
            raise bad_query_parameter(f"invalid field {name!r} for {obj.name}")
        out.add(api_name)
    return frozenset(out)


def _add_expansion(tree: dict[str, Expansion], obj: ObjectType | None, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    node = tree.get(head)
    if node is None:
        relation = obj.relations.get(head) if obj else None
        node = tree[head] = Expansion(relation)
    if rest:
        target = OBJECTS.get(node.relation.target) if node.relation else None
        _add_expansion(node.children, target, rest)


def _find_expansion(tree: dict[str, Expansion], parts: list[str]) -> Expansion | None:
    node = tree.get(parts[0])
    for part in parts[1:]:
        if node is None:
            return None
        node = node.children.get(part)
    return node


def render_value(value: Any, zone: timezone) -> Any:
    if isinstance(value, datetime):
        return oq_datetime(value, zone)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return number_json(value)
    return value


Resolver = Callable[[Relation, dict[str, Any]], dict[str, Any] | list[dict[str, Any]] | None]


def render(
    record: dict[str, Any],
    obj: ObjectType,
    query: ObjectQuery,
    resolve: Resolver,
    zone: timezone,
    *,
    fields: frozenset[str] | None = None,
    expand: dict[str, Expansion] | None = None,
) -> dict[str, Any]:
    """One record as Object Query JSON, with its expansions."""
    keep = query.fields if fields is None and expand is None else fields
    tree = query.expand if expand is None else expand
    out: dict[str, Any] = {}
    for name in obj.fields:
        if keep is not None and name not in keep:
            continue
        value = record.get(name)
        if value is None and not query.include_nulls:
            continue
        out[oq_key(name)] = render_value(value, zone)
    for node in tree.values():
        if node.relation is None:
            continue  # an allowed expansion the sandbox does not model (subscriptions, usages...)
        target = OBJECTS[node.relation.target]
        found = resolve(node.relation, record)
        if isinstance(found, list):
            # Expanded arrays are cut at pageSize with no cursor of their own (section 9.3).
            out[node.relation.key] = [
                render(child, target, query, resolve, zone, fields=node.fields, expand=node.children)
                for child in found[: query.page_size]
            ]
        elif found is not None:
            out[node.relation.key] = render(
                found, target, query, resolve, zone, fields=node.fields, expand=node.children
            )
        elif query.include_nulls:
            out[node.relation.key] = None
    return out
