"""The query options of a list or PUT: ``$filter``, ``$select``, ``$expand``, ``$custom``, ``$top``/``$skip``.

``$filter`` is the OData v3 subset of contract version 4 (acumatica-api.md section 4.2):
``eq ne gt ge lt le``, ``and or not``, parentheses, ``startswith``/``endswith``/``substringof``,
string literals in single quotes with ``''`` for a quote, bare numbers (``0M`` for a decimal),
``true``/``false``/``null``, ``datetimeoffset'…'``, ``datetime'…'``, ``date'…'``, ``guid'…'`` and
custom fields as ``cf.String(f='View.Field')``. Types are checked when the filter is bound to the
entity, as the server does: a quoted boolean or number is a 500 "incompatible types"; an unknown
name is a 500. A condition on a detail line (``Details/Account``) is not supported by the server
and is ignored here (it matches every record).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.acumatica.entities import EntitySpec, FieldSpec, Kind, ObjectSpec
from sandbox.acumatica.errors import ApiFailure, key_not_found, odata_error
from sandbox.acumatica.records import Row

# --- tokens --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<typed>(?:datetimeoffset|datetime|date|guid|time)'(?:[^']|'')*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlLfF]?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:[./][A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[(),=])
    """,
    re.VERBOSE,
)

_COMPARISONS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_FUNCTIONS = {"startswith", "endswith", "substringof"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise odata_error(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, match.group(), position))
        position = match.end()
    return out


# --- syntax tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    edm: str  # Edm.String, Edm.Decimal, Edm.Boolean, Edm.DateTimeOffset, Edm.DateTime, Edm.Guid, null
    value: Any


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]


@dataclass(frozen=True)
class CustomRef:
    edm: str
    view: str
    name: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Operand, ...]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Logical:
    op: str  # and | or | not
    parts: tuple[Node, ...]


Operand = Literal | FieldRef | CustomRef | Call
Node = Compare | Logical | Call


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def fail(self, what: str) -> ApiFailure:
        token = self.peek()
        at = token.at if token else len(self.text)
        return odata_error(f"Syntax error: {what} at position {at} in '{self.text}'.")

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end of expression")
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise self.fail(f"'{text}' expected")

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text in words:
            self.index += 1
            return token.text
        return None

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek() is not None:
            raise self.fail("unexpected token")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.keyword("or"):
            node = Logical("or", (node, self.and_expr()))
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.keyword("and"):
            node = Logical("and", (node, self.not_expr()))
        return node

    def not_expr(self) -> Node:
        if self.keyword("not"):
            return Logical("not", (self.not_expr(),))
        return self.comparison()

    def comparison(self) -> Node:
        token = self.peek()
        if token is not None and token.text == "(":
            # Either a parenthesised condition or a parenthesised operand; conditions are all we need.
            self.take()
            node = self.or_expr()
            self.expect(")")
            return node
        left = self.operand()
        op = self.keyword(*_COMPARISONS)
        if op is None:
            if isinstance(left, Call):
                return left  # a boolean function: startswith(...)
            raise self.fail("comparison operator expected")
        return Compare(op, left, self.operand())

    def operand(self) -> Operand:
        token = self.take()
        if token.kind == "string":
            return Literal("Edm.String", token.text[1:-1].replace("''", "'"))
        if token.kind == "typed":
            prefix, _, rest = token.text.partition("'")
            return _typed_literal(prefix, rest[:-1].replace("''", "'"), self)
        if token.kind == "number":
            return _number(token.text, self)
        if token.kind == "name":
            if token.text in ("true", "false"):
                return Literal("Edm.Boolean", token.text == "true")
            if token.text == "null":
                return Literal("null", None)
            following = self.peek()
            if following is not None and following.text == "(":
                if token.text.startswith("cf."):
                    return self.custom(token.text[3:])
                return self.call(token.text)
            return FieldRef(tuple(token.text.split("/")))
        raise self.fail("operand expected")

    def call(self, name: str) -> Call:
        if name not in _FUNCTIONS:
            raise odata_error(f"Unknown function '{name}'.")
        self.expect("(")
        args = [self.operand()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.take()
            args.append(self.operand())
        self.expect(")")
        if len(args) != 2:
            raise odata_error(f"The function '{name}' takes two arguments.")
        return Call(name, tuple(args))

    def custom(self, type_name: str) -> CustomRef:
        edm = {
            "String": "Edm.String",
            "Decimal": "Edm.Decimal",
            "Int": "Edm.Decimal",
            "Boolean": "Edm.Boolean",
            "DateTime": "Edm.DateTimeOffset",
            "Guid": "Edm.Guid",
        }.get(type_name)
        if edm is None:
            raise odata_error(f"Unknown custom field type 'cf.{type_name}'.")
        self.expect("(")
        self.expect("f")
        self.expect("=")
        token = self.take()
        if token.kind != "string":
            raise self.fail("custom field name expected")
        self.expect(")")
        view, _, name = token.text[1:-1].partition(".")
        return CustomRef(edm, view, name)


def _typed_literal(prefix: str, body: str, parser: _Parser) -> Literal:
    try:
        if prefix == "guid":
            return Literal("Edm.Guid", str(uuid.UUID(body)))
        if prefix == "date":
            return Literal("Edm.DateTime", date.fromisoformat(body))
        if prefix == "time":
            return Literal("Edm.Time", time.fromisoformat(body))
        moment = datetime.fromisoformat(body[:-1] + "+00:00" if body.endswith("Z") else body)
        return Literal("Edm.DateTimeOffset" if prefix == "datetimeoffset" else "Edm.DateTime", moment)
    except ValueError as exc:
        raise parser.fail(f"unrecognized {prefix} literal") from exc


def _number(text: str, parser: _Parser) -> Literal:
    body = text.rstrip("mMdDlLfF")
    try:
        return Literal("Edm.Decimal", Decimal(body))
    except InvalidOperation as exc:  # pragma: no cover - the token regex only admits numbers
        raise parser.fail("bad number") from exc


# --- binding and evaluation ----------------------------------------------------------------

_EDM_OF_KIND = {
    Kind.STRING: "Edm.String",
    Kind.DECIMAL: "Edm.Decimal",
    Kind.INT: "Edm.Decimal",
    Kind.SHORT: "Edm.Decimal",
    Kind.BOOL: "Edm.Boolean",
    Kind.DATE: "Edm.DateTime",
    Kind.DATETIME: "Edm.DateTimeOffset",
    Kind.GUID: "Edm.Guid",
}
_DATES = {"Edm.DateTime", "Edm.DateTimeOffset"}


def _edm_display(edm: str) -> str:
    return "Edm.Int32" if edm == "Edm.Decimal-int" else edm


def _compatible(left: str, right: str) -> bool:
    if "null" in (left, right) or "ignored" in (left, right):
        return True
    if left in _DATES and right in _DATES:
        return True
    return left == right


@dataclass(frozen=True)
class Filter:
    """A bound ``$filter``: ``matches(row)`` says whether a stored row satisfies it."""

    node: Node
    entity: EntitySpec
    tz: timezone

    def matches(self, row: Row) -> bool:
        return bool(_evaluate(self.node, row, self))


def parse_filter(text: str, entity: EntitySpec, tz: timezone) -> Filter:
    """Parse and type-check ``$filter`` against ``entity``; raise the server's 500 on a bad one."""
    node = _Parser(text).parse()
    _bind(node, entity)
    return Filter(node, entity, tz)


def _resolve(path: tuple[str, ...], obj: ObjectSpec, entity: EntitySpec) -> FieldSpec | None:
    """The field a path names; ``None`` for a detail-line path (ignored); 500 if it does not exist."""
    head, rest = path[0], path[1:]
    spec_field = obj.field(head)
    if spec_field is not None and not rest:
        return spec_field
    link = obj.link(head)
    if link is not None and rest:
        return _resolve(rest, link.item, entity)
    collection = obj.collection(head)
    if collection is not None and rest and collection.item.field(rest[0]) is not None:
        return None
    raise odata_error(f"Could not find a property named '{'/'.join(path)}' on type 'Default.{entity.name}'.")


def _edm(operand: Operand, entity: EntitySpec) -> str:
    if isinstance(operand, Literal):
        return operand.edm
    if isinstance(operand, CustomRef):
        return operand.edm
    if isinstance(operand, Call):
        raise odata_error(f"The function '{operand.name}' cannot be compared.")
    spec_field = _resolve(operand.path, entity.obj, entity)
    return "ignored" if spec_field is None else _EDM_OF_KIND[spec_field.kind]


def _bind(node: Node, entity: EntitySpec) -> None:
    if isinstance(node, Logical):
        for part in node.parts:
            _bind(part, entity)
        return
    if isinstance(node, Call):
        for arg in node.args:
            edm = _edm(arg, entity)
            if edm not in ("Edm.String", "ignored", "null"):
                raise odata_error(
                    f"No function signature for the function with name '{node.name}' matches the "
                    f"specified arguments. The function signatures considered are: {node.name}(Edm.String "
                    f"Nullable=true, Edm.String Nullable=true)."
                )
        return
    left, right = _edm(node.left, entity), _edm(node.right, entity)
    if not _compatible(left, right):
        raise odata_error(
            f"A binary operator with incompatible types was detected. Found operand types "
            f"'{_edm_display(left)}' and '{_edm_display(right)}' for operator kind '{_COMPARISONS[node.op]}'."
        )


_IGNORED = object()


def _value(operand: Operand, row: Row, flt: Filter) -> Any:
    """The comparable python value: str, Decimal, bool, aware datetime, or None; labels as (label, code)."""
    if isinstance(operand, Literal):
        if isinstance(operand.value, date) and not isinstance(operand.value, datetime):
            return datetime.combine(operand.value, time(), flt.tz)
        if isinstance(operand.value, datetime) and operand.value.tzinfo is None:
            return operand.value.replace(tzinfo=flt.tz)
        return operand.value
    if isinstance(operand, CustomRef):
        value = row.custom.get(operand.view, {}).get(operand.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Decimal(str(value))
        return value
    if isinstance(operand, Call):  # pragma: no cover - rejected by _bind
        return None
    target = row
    obj = flt.entity.obj
    for step in operand.path[:-1]:
        link = obj.link(step)
        if link is None:
            return _IGNORED  # a detail-line path
        target = target.links.get(link.attr) or Row()
        obj = link.item
    spec_field = obj.field(operand.path[-1])
    if spec_field is None:  # pragma: no cover - rejected by _bind
        return _IGNORED
    raw = target.values.get(spec_field.key)
    if raw is None:
        return None
    if spec_field.labels is not None:
        return (spec_field.labels.get(raw, raw), raw)
    if spec_field.kind is Kind.DATE:
        return datetime.combine(raw, time(), flt.tz)
    if spec_field.kind in (Kind.INT, Kind.SHORT):
        return Decimal(raw)
    return raw


def _compare(op: str, left: Any, right: Any) -> bool:
    if isinstance(left, tuple) or isinstance(right, tuple):
        # A drop-down compares by label; the stored code is accepted as well.
        lefts = left if isinstance(left, tuple) else (left,)
        rights = right if isinstance(right, tuple) else (right,)
        if op == "eq":
            return any(a == b for a in lefts for b in rights)
        if op == "ne":
            return not any(a == b for a in lefts for b in rights)
        left, right = lefts[0], rights[0]
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def _text(value: Any) -> str | None:
    if isinstance(value, tuple):
        return str(value[0])
    return None if value is None else str(value)


_CALLS: dict[str, Callable[[str, str], bool]] = {
    "startswith": lambda a, b: a.startswith(b),
    "endswith": lambda a, b: a.endswith(b),
    "substringof": lambda a, b: a in b,
}


def _evaluate(node: Node, row: Row, flt: Filter) -> bool:
    if isinstance(node, Logical):
        if node.op == "not":
            return not _evaluate(node.parts[0], row, flt)
        results = (_evaluate(part, row, flt) for part in node.parts)
        return all(results) if node.op == "and" else any(results)
    if isinstance(node, Call):
        a, b = (_value(arg, row, flt) for arg in node.args)
        if a is _IGNORED or b is _IGNORED:
            return True
        text_a, text_b = _text(a), _text(b)
        if text_a is None or text_b is None:
            return False
        return _CALLS[node.name](text_a, text_b)
    left, right = _value(node.left, row, flt), _value(node.right, row, flt)
    if left is _IGNORED or right is _IGNORED:
        return True
    return _compare(node.op, left, right)


# --- $select / $expand / $custom / paging ---------------------------------------------------


def _names(text: str | None) -> list[str]:
    if not text:
        return []
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_select(text: str | None, entity: EntitySpec) -> frozenset[str] | None:
    """``$select`` names (``Field``, ``Link/Field``, ``Details/Field``); an unknown one is a 500."""
    names = _names(text)
    if not names:
        return None
    for name in names:
        if not _known_path(tuple(name.split("/")), entity.obj, allow_container=True):
            raise key_not_found()
    return frozenset(names)


def parse_expand(text: str | None, entity: EntitySpec) -> frozenset[str]:
    """``$expand`` names (``Details``, ``MainContact/Address``, ``files``, ``Details/files``)."""
    names = _names(text)
    for name in names:
        parts = tuple(name.split("/"))
        if parts[-1] == "files" and (len(parts) == 1 or _container(parts[:-1], entity.obj)):
            continue
        if not _container(parts, entity.obj):
            raise key_not_found()
    return frozenset(names)


def parse_custom(text: str | None) -> tuple[tuple[str, str], ...]:
    """``$custom=View.Field,...`` (``Details/View.Field`` names are accepted and not rendered)."""
    out = []
    for name in _names(text):
        view, _, field_name = name.rpartition("/")[2].partition(".")
        if not field_name:
            raise key_not_found()
        if "/" not in name:
            out.append((view, field_name))
    return tuple(out)


def _container(parts: tuple[str, ...], obj: ObjectSpec) -> bool:
    head, rest = parts[0], parts[1:]
    collection = obj.collection(head)
    if collection is not None:
        return not rest or _container(rest, collection.item)
    link = obj.link(head)
    if link is not None:
        return not rest or _container(rest, link.item)
    return False


def _known_path(parts: tuple[str, ...], obj: ObjectSpec, *, allow_container: bool) -> bool:
    head, rest = parts[0], parts[1:]
    if not rest:
        if obj.field(head) is not None:
            return True
        return allow_container and (obj.collection(head) is not None or obj.link(head) is not None)
    collection = obj.collection(head)
    if collection is not None:
        return _known_path(rest, collection.item, allow_container=allow_container)
    link = obj.link(head)
    if link is not None:
        return _known_path(rest, link.item, allow_container=allow_container)
    return False


def parse_count(text: str | None, name: str) -> int | None:
    """``$top``/``$skip`` as a non-negative integer; a malformed one is the server's 500."""
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise odata_error(f"Invalid value '{text}' for {name}: a non-negative integer is expected.")
    return int(text)
