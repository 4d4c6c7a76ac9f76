"""Bad input on purpose: the values ledgerbridge puts into Zuora queries.

* ZOQL string literals (shared/zuora/zoql.py ``quote``): backslash escapes, zuora-api.md section
  5.2. Whatever the value - quotes, backslashes, commas, brackets, control characters, any
  unicode, thousands of characters - a tiny reference lexer reads the literal back as exactly
  that value and finds the literal ending where the query ends: there is no way out of it.
  A lone surrogate, which no request can carry, is a ValueError.
* Object Query ``filter[]`` values (shared/zuora/object_query.py ``condition``): section 9.2 has
  no escape at all, so a value either reads back as itself through a reference parser of
  ``<field>.<OP>:<value>`` (``null``, ``%02%03`` for '', ``[a,b]`` for IN), also after the trip
  through the URL, or is refused with a ValueError that quotes it.

Where these rules come from: docs/vendor-notes.md, Zuora section.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.zuora.object_query import MAX_FILTER_CHARS, OPERATORS, ObjectQuery, condition
from shared.zuora.zoql import accounting_period_by_name, quote
from tests.unit.properties.support import zuora_client

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
WIRE = settings(PROPERTY, max_examples=100)  # these go through the real client

# Any character, lone surrogates and controls included, and often the ones the syntaxes use.
awkward = st.text(
    st.characters()
    | st.characters(categories=["Cs", "Cc"])
    | st.sampled_from(
        ["'", '"', "\\", ",", "[", "]", ":", ".", "&", "=", "#", "%", "+", " ", "\x00", "\x02"]
    ),
    max_size=30,
)
values = (
    awkward
    | st.sampled_from(["null", "NULL", "\x02\x03", "", " x", "x ", "Dec'16", "a\\'b", "\\", "'"])
    | st.text(max_size=5).map(lambda s: s * 1000)
)


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- ZOQL -------------------------------------------------------------------------------------------

ZOQL_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
PERIOD_QUERY = (
    "select Id, Name, Status, StartDate, EndDate, FiscalYear, Notes from AccountingPeriod where Name = "
)


def read_zoql_literal(text: str, start: int) -> tuple[str, int]:
    """The value of the literal opening at ``text[start]`` and the index just after it: only an
    unescaped ``'`` ends it; a backslash takes the next character as one of section 5.2's
    escapes (any other is a KeyError: it would be a guess)."""
    assert text[start] == "'"
    out: list[str] = []
    i = start + 1
    while True:
        ch = text[i]  # IndexError: the literal never ends
        if ch == "'":
            return "".join(out), i + 1
        if ch == "\\":
            out.append(ZOQL_ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1


@PROPERTY
@given(value=values)
@example(value="Dec'16' or Name != '")  # would end the literal early without the escape
@example(value="\ud800")
def test_a_zoql_literal_reads_back_as_its_value_and_ends_where_it_should(value: str) -> None:
    if not is_text(value):
        with pytest.raises(ValueError, match="cannot quote"):
            quote(value)
        return
    literal = quote(value)

    assert read_zoql_literal(literal, 0) == (value, len(literal))
    query = accounting_period_by_name(value)
    assert query.startswith(PERIOD_QUERY)
    assert read_zoql_literal(query, len(PERIOD_QUERY)) == (value, len(query))  # nothing after it


def test_a_zoql_query_carries_the_value_to_zuora_unchanged():
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"records": [], "size": 0, "done": True})

    with zuora_client(answer, sent) as client:

        @WIRE
        @given(value=values.filter(is_text))
        def check(value: str) -> None:
            sent.clear()

            assert client.periods.find_by_name(value) is None

            query = json.loads(sent[-1].content)["queryString"]
            assert query.startswith(PERIOD_QUERY)
            assert read_zoql_literal(query, len(PERIOD_QUERY)) == (value, len(query))

        check()


# -- Object Query -----------------------------------------------------------------------------------


def read_filter(text: str) -> tuple[str, str, Any]:
    """``<field>.<OP>:<value>`` as Zuora documents it (section 9.2): the value after the first
    ':' (a field name has none), ``null`` is null, ``%02%03`` is '', ``[a,b]`` a list for IN."""
    head, colon, raw = text.partition(":")
    field, dot, op = head.rpartition(".")
    assert colon and dot and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", field), text
    assert op in OPERATORS, text

    def one(item: str) -> str | None:
        return None if item == "null" else "" if item == "\x02\x03" else item

    if op == "IN":
        assert raw.startswith("[") and raw.endswith("]"), text
        inner = raw[1:-1]
        return field, op, [one(item.strip()) for item in inner.split(",")] if inner else []
    return field, op, one(raw)


def refused(value: Any, *, in_list: bool) -> bool:
    """Whether a string value cannot be told apart from another value in a filter."""
    if not isinstance(value, str):
        return False
    if value.lower() == "null" or value == "\x02\x03" or not is_text(value):
        return True
    return in_list and (bool(set(value) & set(",[]")) or value != value.strip())


@PROPERTY
@given(
    field=st.sampled_from(["id", "updateddate", "ERPAccountId__c", "account.id"]), value=values | st.none()
)
@example(field="id", value="null")  # the string "null" was sent as null
@example(field="id", value="\x02\x03")  # and Zuora's spelling of '' as ''
def test_an_object_query_value_reads_back_as_itself_or_is_refused(field: str, value: str | None) -> None:
    for op in ("EQ", "NE", "SW", "GT"):
        if refused(value, in_list=False):
            with pytest.raises(ValueError, match="cannot filter on"):
                condition(field, op, value)
        else:
            assert read_filter(condition(field, op, value)) == (field, op, value)


@PROPERTY
@given(items=st.lists(values | st.none(), max_size=5))
@example(items=["a,b"])  # was sent as [a,b]: two ids
@example(items=["x]", "[y"])
@example(items=[" 8ad0"])
def test_an_object_query_in_list_reads_back_item_for_item_or_is_refused(items: list[str | None]) -> None:
    if any(refused(item, in_list=True) for item in items):
        with pytest.raises(ValueError, match="cannot"):
            condition("id", "IN", items)
        return
    assert read_filter(condition("id", "IN", items)) == ("id", "IN", items)


@PROPERTY
@given(field=st.text(max_size=20), value=st.text(max_size=5))
@example(field="id.EQ:x&filter[]=status", value="y")
def test_a_field_name_cannot_carry_an_operator_or_a_value(field: str, value: str) -> None:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", field):
        return
    with pytest.raises(ValueError, match="is not an Object Query field name"):
        condition(field, "EQ", value)


@PROPERTY
@given(
    value=st.one_of(
        st.integers(),
        st.decimals(min_value=-(10**20), max_value=10**20),
        st.sampled_from(
            [Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN"), Decimal("1E+2"), Decimal("1E-7")]
        ),
        st.dates(),
        st.datetimes(timezones=st.just(UTC)),
        st.booleans(),
    )
)
@example(value=Decimal("NaN"))  # was sent as NaN
@example(value=Decimal("1E+2"))  # was sent as 1E+2
def test_typed_values_are_rendered_as_section_9_2_spells_them(value: object) -> None:
    if isinstance(value, Decimal) and not value.is_finite():
        with pytest.raises(ValueError, match="cannot filter on the amount"):
            condition("amount", "GT", value)
        return
    _, _, raw = read_filter(condition("amount", "GT", value))
    if isinstance(value, bool):
        assert raw == str(value).lower()
    elif isinstance(value, datetime):
        assert datetime.fromisoformat(raw) == value.replace(microsecond=0)
    elif isinstance(value, date):
        assert date.fromisoformat(raw) == value
    else:
        assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", raw) and Decimal(raw) == value, raw


def test_filters_reach_the_wire_as_built_and_nothing_else():
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": []})

    with zuora_client(answer, sent) as client:

        @WIRE
        @given(
            value=values.filter(lambda v: not refused(v, in_list=False)),
            items=st.lists(values, max_size=3),
        )
        @example(value="\U00010000" * 6000, items=[])  # was httpx.InvalidURL("URL too long") at send time
        def check(value: str, items: list[str]) -> None:
            filters = [condition("name", "EQ", value)]
            if not any(refused(item, in_list=True) for item in items):
                filters.append(condition("id", "IN", items))
            try:
                query = ObjectQuery(object="accounts", filters=tuple(filters))
            except ValueError as exc:
                # Too long for a URL (httpx refuses one over 65,536 characters): a percent-
                # encoded character takes at most 12, so the filters hold over 5,000.
                assert "characters in the URL" in str(exc)
                assert sum(map(len, filters)) > MAX_FILTER_CHARS // 12
                return
            sent.clear()

            assert [row for page in client.objects.pages(query) for row in page.data] == []

            params = sent[-1].url.params
            assert params.get_list("filter[]") == filters
            assert sorted(set(params.keys())) == ["filter[]", "includeNullFields", "pageSize"]
            assert read_filter(params.get_list("filter[]")[0]) == ("name", "EQ", value)

        check()
