"""The subset of ZOQL that ``POST /v1/action/query`` accepts (zuora-api.md section 5.2).

``select f1, f2 from Object [where cond (and|or) cond ...]``: keywords lowercase only, field names
case-insensitive, no ``*``, no parentheses, ``and`` binds tighter than ``or``, at most 200
conditions, operators ``= != > >= < <= like``, ``null``, ``true``/``false``, numbers, and
single-quoted strings with backslash escapes (``'Dec\\'16'`` is the name ``Dec'16``; SQL-style
doubling is not an escape).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timezone
from decimal import Decimal
from typing import Any

from .formats import decimal, parse_date, parse_datetime
from .schema import Kind, ObjectType

MAX_CONDITIONS = 200
KEYWORDS = {"select", "from", "where", "and", "or", "null", "true", "false", "like"}
OPERATORS = ("!=", ">=", "<=", "=", ">", "<")
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class ZoqlError(ValueError):
    """A malformed query; ``fault`` is the Actions fault code (MALFORMED_QUERY, INVALID_FIELD...)."""

    def __init__(self, fault: str, message: str) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True)
class Token:
    kind: str  # word | string | number | op | comma
    text: str
    value: Any = None


@dataclass(frozen=True)
class Condition:
    field: str  # as written
    op: str
    value: Any  # str | Decimal | bool | None
    literal: str  # "string" | "number" | "bool" | "null"


@dataclass(frozen=True)
class Query:
    fields: list[str]
    object_name: str
    where: list[list[Condition]]  # OR of ANDs; empty = everything


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == ",":
            tokens.append(Token("comma", ch))
            i += 1
        elif ch == "'":
            value, i = _string(text, i + 1)
            tokens.append(Token("string", value, value))
        elif ch in "!<>=":
            op = next((o for o in OPERATORS if text.startswith(o, i)), None)
            if op is None:
                raise ZoqlError("MALFORMED_QUERY", f"unexpected character {ch!r} at {i}")
            tokens.append(Token("op", op))
            i += len(op)
        elif (match := _NUMBER.match(text, i)) and (ch == "-" or ch.isdigit()):
            tokens.append(Token("number", match.group(), Decimal(match.group())))
            i = match.end()
        elif match := _WORD.match(text, i):
            tokens.append(Token("word", match.group()))
            i = match.end()
        else:
            raise ZoqlError("MALFORMED_QUERY", f"unexpected character {ch!r} at {i}")
    return tokens


def _string(text: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                raise ZoqlError("MALFORMED_QUERY", f"invalid escape sequence at {i}")
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        elif ch == "'":
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ZoqlError("MALFORMED_QUERY", "unterminated string literal")


def parse(text: str) -> Query:
    """Parse a query string; raises ``ZoqlError`` on anything outside the accepted subset."""
    tokens = tokenize(text)
    pos = 0

    def peek() -> Token | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(kind: str, text_: str | None = None) -> Token:
        nonlocal pos
        token = peek()
        if token is None or token.kind != kind or (text_ is not None and token.text != text_):
            found = "end of query" if token is None else repr(token.text)
            raise ZoqlError("MALFORMED_QUERY", f"expected {text_ or kind}, found {found}")
        pos += 1
        return token

    def take_any() -> Token:
        nonlocal pos
        token = peek()
        if token is None:
            raise ZoqlError("MALFORMED_QUERY", "expected a value, found end of query")
        pos += 1
        return token

    first = peek()
    if (
        first is not None
        and first.kind == "word"
        and first.text.lower() == "select"
        and first.text != "select"
    ):
        raise ZoqlError("MALFORMED_QUERY", "ZOQL keywords must be lowercase")
    take("word", "select")
    fields = [_field_name(take("word"))]
    while (token := peek()) is not None and token.kind == "comma":
        take("comma")
        fields.append(_field_name(take("word")))
    take("word", "from")
    object_name = take("word").text
    where: list[list[Condition]] = []
    if peek() is not None:
        take("word", "where")
        group: list[Condition] = []
        count = 0
        while True:
            field = _field_name(take("word"))
            op_token = peek()
            if op_token is not None and op_token.kind == "word" and op_token.text == "like":
                op = "like"
                take("word")
            else:
                op = take("op").text
            value, literal = _literal(take_any())
            if literal == "null" and op not in ("=", "!="):
                raise ZoqlError("MALFORMED_QUERY", "null can only be compared with = or !=")
            if op == "like" and literal != "string":
                raise ZoqlError("MALFORMED_QUERY", "like needs a string literal")
            group.append(Condition(field, op, value, literal))
            count += 1
            if count > MAX_CONDITIONS:
                raise ZoqlError("MALFORMED_QUERY", f"more than {MAX_CONDITIONS} conditions")
            joiner = peek()
            if joiner is None:
                break
            if joiner.kind != "word" or joiner.text not in ("and", "or"):
                raise ZoqlError("MALFORMED_QUERY", f"expected and/or, found {joiner.text!r}")
            take("word")
            if joiner.text == "or":
                where.append(group)
                group = []
        where.append(group)
    return Query(fields, object_name, where)


def _field_name(token: Token) -> str:
    if token.text in KEYWORDS or token.text == "*":
        raise ZoqlError("MALFORMED_QUERY", f"expected a field name, found {token.text!r}")
    return token.text


def _literal(token: Token) -> tuple[Any, str]:
    if token.kind == "string":
        return token.value, "string"
    if token.kind == "number":
        return token.value, "number"
    if token.kind == "word" and token.text in ("true", "false"):
        return token.text == "true", "bool"
    if token.kind == "word" and token.text == "null":
        return None, "null"
    raise ZoqlError("MALFORMED_QUERY", f"expected a value, found {token.text!r}")


@dataclass(frozen=True)
class Predicate:
    """A condition bound to a field of an object, ready to test stored records."""

    field: str
    kind: Kind
    op: str
    value: Any

    def test(self, record: dict[str, Any]) -> bool:
        actual = record.get(self.field)
        if self.value is None:
            return (actual is None) == (self.op == "=")
        if actual is None:
            return self.op == "!="
        if self.op == "like":
            return _like(str(self.value), str(actual))
        left, right = actual, self.value
        if self.kind is Kind.STRING:
            # Plain strings compare case-insensitively; picklist values and ids do not (5.2).
            left, right = str(left).lower(), str(right).lower()
        return _compare(self.op, left, right)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    try:
        if op == ">":
            return bool(left > right)
        if op == ">=":
            return bool(left >= right)
        if op == "<":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags=re.IGNORECASE | re.DOTALL) is not None


def bind(condition: Condition, obj: ObjectType, zone: timezone) -> Predicate:
    """Resolve the field and convert the literal to the field's type; raises ``ZoqlError``."""
    name = obj.field_named(condition.field)
    if name is None:
        raise ZoqlError("INVALID_FIELD", f"invalid field for query: {obj.name}.{condition.field}")
    kind = obj.fields[name]
    value = condition.value
    if value is None:
        return Predicate(name, kind, condition.op, None)
    try:
        converted = _convert(kind, value, condition.literal, zone)
    except ValueError as exc:
        raise ZoqlError("INVALID_VALUE", f"invalid value for {name}: {exc}") from exc
    if condition.op == "like" and kind not in (Kind.STRING, Kind.PICKLIST, Kind.ID):
        raise ZoqlError("MALFORMED_QUERY", f"like is only for string fields, not {name}")
    return Predicate(name, kind, condition.op, converted)


def _convert(kind: Kind, value: Any, literal: str, zone: timezone) -> Any:
    if kind in (Kind.STRING, Kind.PICKLIST, Kind.ID):
        if literal != "string":
            raise ValueError("a string needs single quotes")
        return value
    if kind is Kind.BOOL:
        if literal != "bool":
            raise ValueError("expected true or false")
        return value
    if kind in (Kind.INT, Kind.DECIMAL):
        return decimal(value) if kind is Kind.DECIMAL else int(decimal(value))
    if literal != "string":
        raise ValueError("a date needs single quotes")
    if kind is Kind.DATE:
        text = str(value)
        return parse_date(text[:10]) if len(text) > 10 else parse_date(text)
    return parse_datetime(str(value), zone)


def compile_where(query: Query, obj: ObjectType, zone: timezone) -> list[list[Predicate]]:
    return [[bind(c, obj, zone) for c in group] for group in query.where]


def matches(where: list[list[Predicate]], record: dict[str, Any]) -> bool:
    if not where:
        return True
    return any(all(p.test(record) for p in group) for group in where)
