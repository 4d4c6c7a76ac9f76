"""The CV4 wire format (acumatica-api.md section 3): wrapping, unwrapping, numbers, filters."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.erp.acumatica_wire import (
    SYSTEM_KEYS,
    dumps,
    error_reasons,
    key_path,
    loads,
    odata_string,
    post_period,
    query_string,
    unwrap,
    wrap,
)
from shared.errors import Reason

# -- wrap: unwrapped values are impossible ---------------------------------------------------------

field_names = st.from_regex(r"[A-Z][A-Za-z0-9]{0,10}", fullmatch=True)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.dates(),
)


def _records(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    values = st.one_of(scalars, children, st.lists(children, max_size=3))
    return st.dictionaries(field_names, values, max_size=5)


records = st.recursive(st.dictionaries(field_names, scalars, max_size=5), _records, max_leaves=25)
system = st.fixed_dictionaries(
    {},
    optional={"id": st.uuids().map(str), "rowNumber": st.integers(1, 500), "delete": st.booleans()},
)


def _with_system(record: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**record, **extra}


def assert_every_leaf_wrapped(sent: dict[str, Any], original: dict[str, Any]) -> None:
    for key, value in sent.items():
        if key in SYSTEM_KEYS:
            assert value == original[key]
            continue
        source = original[key]
        if isinstance(source, dict):
            assert isinstance(value, dict) and "value" not in value
            assert_every_leaf_wrapped(value, source)
        elif isinstance(source, list):
            assert isinstance(value, list) and len(value) == len(source)
            for sent_item, source_item in zip(value, source, strict=True):
                assert_every_leaf_wrapped(sent_item, source_item)
        else:
            assert set(value) == {"value"}, f"{key} is not wrapped: {value!r}"
            assert not isinstance(value["value"], dict | list)
    # Every field the caller set reaches the body (None = "leave unchanged" is the exception).
    for key, source in original.items():
        if source is None or (isinstance(source, dict) and not wrap(source)):
            assert key not in sent
        else:
            assert key in sent


@settings(max_examples=200, deadline=None)
@given(records, system)
def test_wrap_every_non_system_leaf_is_a_value_object(record, extra):
    record = _with_system(record, extra)
    sent = wrap(record)
    assert_every_leaf_wrapped(sent, record)


@settings(max_examples=200, deadline=None)
@given(records)
def test_wrap_then_unwrap_round_trips_through_json(record):
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: plain(v) for k, v in value.items() if v is not None}
            return {k: v for k, v in out.items() if v != {} or not isinstance(value[k], dict)}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, dt.date):
            return f"{value.isoformat()}T00:00:00"
        return value

    received = unwrap(loads(dumps(wrap(record))))
    assert received == {k: v for k, v in plain(record).items() if v != {}}


def test_wrap_keeps_system_properties_bare_and_wraps_note():
    line_id = "b8410d82-0000-0000-0000-000000000001"
    sent = wrap(
        {"id": "b6410d82", "note": "free text", "Details": [{"id": line_id, "delete": True}], "rowNumber": 1}
    )
    assert sent == {
        "id": "b6410d82",
        "note": {"value": "free text"},
        "Details": [{"id": line_id, "delete": True}],
        "rowNumber": 1,
    }


def test_wrap_nested_linked_entity_and_custom_block():
    sent = wrap(
        {
            "MainContact": {"Email": "ap@example.com", "Address": {"City": "Austin", "State": None}},
            "custom": {"Document": {"UsrZuoraId": "8a8a"}},
        }
    )
    assert sent == {
        "MainContact": {"Email": {"value": "ap@example.com"}, "Address": {"City": {"value": "Austin"}}},
        "custom": {"Document": {"UsrZuoraId": {"value": "8a8a"}}},
    }


def test_wrap_drops_none_and_linked_entities_with_nothing_to_set():
    assert wrap(
        {"CustomerID": "C1", "Email": None, "MainContact": {"Email": None, "Address": {"City": None}}}
    ) == {"CustomerID": {"value": "C1"}}


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({"Amount": 1.5}, TypeError),
        ({"value": "x"}, ValueError),
        ({"Nested": {"error": "x"}}, ValueError),
        ({"Details": [1, 2]}, TypeError),
        ({"id": 12}, TypeError),
        ({"delete": "yes"}, TypeError),
        ({"Amount": Decimal("NaN")}, ValueError),
        ({"When": object()}, TypeError),
    ],
)
def test_wrap_refuses_values_that_cannot_be_sent(record, error):
    with pytest.raises(error):
        wrap(record)


def test_wrap_dates_go_out_as_midnight_without_an_offset():
    # The definitions type dates as DateTimeValue (a date-time); no offset keeps the server's day.
    assert wrap({"Date": dt.date(2025, 6, 6)}) == {"Date": {"value": "2025-06-06T00:00:00"}}


# -- numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "literal"),
    [
        (Decimal("125.50"), "125.50"),
        (Decimal("0.10"), "0.10"),
        (Decimal("-99.99"), "-99.99"),
        (Decimal("1E+3"), "1000"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("0.000001"), "0.000001"),
    ],
)
def test_dumps_writes_decimals_as_exact_json_numbers(amount, literal):
    text = dumps({"PaymentAmount": {"value": amount}})
    assert text == '{"PaymentAmount":{"value":' + literal + "}}"
    assert isinstance(json.loads(text)["PaymentAmount"]["value"], int | float)  # a number, not a string
    assert loads(text)["PaymentAmount"]["value"] == amount


def test_dumps_escapes_strings_and_keeps_unicode():
    assert dumps({"Description": 'Zürich "HQ"\n'}) == '{"Description":"Zürich \\"HQ\\"\\n"}'


def test_loads_reads_fractions_as_decimal():
    assert loads('{"Amount":{"value":1222.8},"Qty":{"value":1}}') == {
        "Amount": {"value": Decimal("1222.8")},
        "Qty": {"value": 1},
    }


# -- unwrap -------------------------------------------------------------------------------------------


def test_unwrap_reads_empty_objects_as_none_and_keeps_system_fields():
    body = {
        "id": "7b89",
        "rowNumber": 1,
        "note": {"value": ""},
        "CashAccount": {},
        "PostPeriod": {"value": "122019"},
        "Details": [{"id": "8189", "rowNumber": 1, "Qty": {"value": 1.0}, "custom": {}}],
        "custom": {},
        "_links": {"self": "/site/entity/Default/25.200.001/Invoice/7b89"},
    }
    assert unwrap(body) == {
        "id": "7b89",
        "rowNumber": 1,
        "note": "",
        "CashAccount": None,
        "PostPeriod": "122019",
        "Details": [{"id": "8189", "rowNumber": 1, "Qty": 1.0, "custom": None}],
        "custom": None,
        "_links": {"self": "/site/entity/Default/25.200.001/Invoice/7b89"},
    }


# -- periods, filters, keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "wire"),
    [("2025-06", "062025"), (dt.date(2024, 12, 31), "122024"), ("2025-01", "012025")],
)
def test_post_period_is_mmyyyy(period, wire):
    assert post_period(period) == wire


@pytest.mark.parametrize("bad", ["202506", "2025-13", "06-2025", "2025-6"])
def test_post_period_refuses_other_spellings(bad):
    with pytest.raises(ValueError):
        post_period(bad)


def test_odata_string_doubles_quotes():
    assert odata_string("O'Brien's") == "'O''Brien''s'"


def test_query_string_percent_encodes_filter_values():
    text = query_string([("$filter", "CustomerOrder eq 'A&B+C #1''s'"), ("$select", "Type,ReferenceNbr")])
    assert text == "$filter=CustomerOrder%20eq%20%27A%26B%2BC%20%231%27%27s%27&$select=Type,ReferenceNbr"


def test_key_path_encodes_spaces_and_slashes():
    assert key_path("Credit Memo", "AR/0001") == "Credit%20Memo/AR%2F0001"


# -- error bodies ---------------------------------------------------------------------------------------


def test_error_reasons_collects_record_and_field_errors_recursively():
    body = {
        "id": "b641",
        "rowNumber": 1,
        "error": "Inserting  'AP Transactions' record raised at least one error. Please review the errors.",
        "Amount": {"value": 201.73},
        "Customer": {"value": "C9", "error": "'Customer' cannot be found in the system."},
        "MainContact": {"Email": {"value": "x", "error": "Invalid e-mail."}},
        "Details": [
            {"id": "b841", "rowNumber": 1, "InventoryID": {}, "Qty": {"value": 1}},
            {
                "id": "b842",
                "rowNumber": 2,
                "Project": {
                    "value": "TES2323T",
                    "error": "Project 'TES2323T  ' cannot be found in the system.",
                },
            },
        ],
        "ReferenceNbr": {"value": "<NEW>"},
    }
    assert error_reasons(body) == [
        Reason(
            "record",
            "Inserting  'AP Transactions' record raised at least one error. Please review the errors.",
            None,
        ),
        Reason("field", "'Customer' cannot be found in the system.", "Customer"),
        Reason("field", "Invalid e-mail.", "MainContact.Email"),
        Reason("field", "Project 'TES2323T  ' cannot be found in the system.", "Details[2].Project"),
    ]


def test_error_reasons_reads_http_error_model_state_and_inner_exception():
    body = {
        "message": "The request is invalid.",
        "modelState": {"entity.CustomerID": ["Unexpected token."]},
        "innerException": {"exceptionType": "PX.Data.PXException", "exceptionMessage": "inner"},
    }
    assert error_reasons(body) == [
        Reason("error", "The request is invalid.", None),
        Reason("invalid", "Unexpected token.", "entity.CustomerID"),
        Reason("PXException", "inner", None),
    ]
