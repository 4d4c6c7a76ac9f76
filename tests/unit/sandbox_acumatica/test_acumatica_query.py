"""``$filter``, ``$select``, ``$expand``, ``$top``/``$skip`` (acumatica-api.md section 4.2, pitfall 13)."""

from __future__ import annotations

import pytest


@pytest.fixture
def invoices(api):
    api.customer("C0001")
    api.customer("C0002")
    api.invoice("INV-1", amount=10.0, Description="Zuora INV-1")
    api.invoice("INV-2", amount=20.0, Description="Zuora INV-2", Hold=True)
    api.invoice("O'Brien-3", amount=30.0, customer="C0002", Description="Manual")
    return api


def _orders(api, text):
    response = api.get("Invoice", **{"$filter": text})
    assert response.status_code == 200, response.text
    return [row["CustomerOrder"]["value"] for row in response.json()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CustomerOrder eq 'INV-1'", ["INV-1"]),
        ("CustomerOrder ne 'INV-1'", ["INV-2", "O'Brien-3"]),
        ("Amount gt 10", ["INV-2", "O'Brien-3"]),
        ("Amount ge 20.0M", ["INV-2", "O'Brien-3"]),
        ("Amount lt 20", ["INV-1"]),
        ("Amount le 20", ["INV-1", "INV-2"]),
        ("Customer eq 'C0001' and Amount gt 15", ["INV-2"]),
        ("CustomerOrder eq 'INV-1' or CustomerOrder eq 'INV-2'", ["INV-1", "INV-2"]),
        ("(Amount lt 15 or Amount gt 25) and Customer eq 'C0002'", ["O'Brien-3"]),
        ("not (Customer eq 'C0001')", ["O'Brien-3"]),
        ("startswith(Description,'Zuora ')", ["INV-1", "INV-2"]),
        ("endswith(Description,'-2')", ["INV-2"]),
        ("substringof('INV-', Description)", ["INV-1", "INV-2"]),
        ("CustomerOrder eq 'O''Brien-3'", ["O'Brien-3"]),
        ("Hold eq true", ["INV-2"]),
        ("Status eq 'Balanced'", ["INV-1", "O'Brien-3"]),
        ("Type eq 'Invoice'", ["INV-1", "INV-2", "O'Brien-3"]),
        ("Date eq datetimeoffset'2025-06-10T00:00:00+00:00'", ["INV-1", "INV-2", "O'Brien-3"]),
        ("Date gt date'2025-06-10'", []),
        ("Project eq null", ["INV-1", "INV-2", "O'Brien-3"]),
        ("CustomerOrder eq 'nothing'", []),
    ],
)
def test_filter_selects_matching_records(invoices, text, expected):
    assert _orders(invoices, text) == expected


def test_filter_on_detail_line_is_ignored(invoices):
    assert _orders(invoices, "Details/Account eq 'nope'") == ["INV-1", "INV-2", "O'Brien-3"]


def test_filter_on_last_modified_needs_encoded_plus(invoices):
    encoded = invoices.client.get(
        "/entity/Default/24.200.001/Invoice?$filter=LastModifiedDateTime%20gt%20datetimeoffset"
        "'2000-01-01T00:00:00%2B00:00'"
    )
    raw_plus = invoices.client.get(
        "/entity/Default/24.200.001/Invoice?$filter=LastModifiedDateTime%20gt%20datetimeoffset"
        "'2000-01-01T00:00:00+00:00'"
    )

    assert len(encoded.json()) == 3
    assert raw_plus.status_code == 500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hold eq 'true'", "Found operand types 'Edm.Boolean' and 'Edm.String' for operator kind 'Equal'."),
        ("Amount eq '10'", "Found operand types 'Edm.Decimal' and 'Edm.String' for operator kind 'Equal'."),
        (
            "CustomerOrder eq 5",
            "Found operand types 'Edm.String' and 'Edm.Decimal' for operator kind 'Equal'.",
        ),
    ],
)
def test_filter_with_incompatible_literal_is_500(invoices, text, message):
    response = invoices.get("Invoice", **{"$filter": text})

    assert response.status_code == 500
    assert response.json()["exceptionMessage"].endswith(message)


def test_filter_on_unknown_field_is_500(invoices):
    response = invoices.get("Invoice", **{"$filter": "InvoiceNbr eq 'INV-1'"})

    assert response.status_code == 500
    assert "InvoiceNbr" in response.json()["exceptionMessage"]


def test_filter_with_odata4_contains_is_500_on_contract_version_4(invoices):
    response = invoices.get("Invoice", **{"$filter": "contains(Description,'Zuora')"})

    assert response.status_code == 500


def test_filter_syntax_error_is_500(invoices):
    assert invoices.get("Invoice", **{"$filter": "CustomerOrder eq"}).status_code == 500


def test_select_returns_only_named_fields(invoices):
    rows = invoices.get("Invoice", **{"$select": "ReferenceNbr,Status", "$top": "1"}).json()

    assert set(rows[0]) == {"id", "rowNumber", "note", "ReferenceNbr", "Status", "custom", "_links"}


def test_select_unknown_field_is_500_key_not_found(invoices):
    response = invoices.get("Invoice", **{"$select": "ReferenceNbr,CustomerID"})

    assert response.status_code == 500
    assert response.json()["exceptionType"] == "System.Collections.Generic.KeyNotFoundException"


def test_expand_unknown_name_is_500(invoices):
    assert invoices.get("Invoice", **{"$expand": "Lines"}).status_code == 500


def test_details_come_back_only_when_expanded(invoices):
    plain = invoices.get("Invoice/Invoice/AR000001").json()
    expanded = invoices.get("Invoice/Invoice/AR000001", **{"$expand": "Details"}).json()

    assert "Details" not in plain
    assert expanded["Details"][0]["UnitPrice"] == {"value": 10.0}


def test_select_of_detail_fields_with_expand(invoices):
    row = invoices.get(
        "Invoice/Invoice/AR000001", **{"$expand": "Details", "$select": "ReferenceNbr,Details/Amount"}
    ).json()

    assert set(row["Details"][0]) == {"id", "rowNumber", "note", "Amount", "custom"}


def test_skip_then_top_pages_the_list(invoices):
    pages = [
        [
            row["CustomerOrder"]["value"]
            for row in invoices.get("Invoice", **{"$top": "2", "$skip": str(skip)}).json()
        ]
        for skip in (0, 2, 4)
    ]

    assert pages == [["INV-1", "INV-2"], ["O'Brien-3"], []]


def test_rows_are_numbered_from_one(invoices):
    rows = invoices.get("Invoice").json()

    assert [row["rowNumber"] for row in rows] == [1, 2, 3]


def test_custom_fields_are_stored_and_read_with_custom_parameter(api):
    api.customer()
    body = {
        "Customer": {"value": "C0001"},
        "Hold": {"value": False},
        "custom": {"Document": {"UsrZuoraId": {"type": "CustomStringField", "value": "8a8aa0"}}},
    }
    api.client.put("/entity/Default/24.200.001/Invoice", json=body)

    plain = api.get("Invoice/Invoice/AR000001").json()
    custom = api.get("Invoice/Invoice/AR000001", **{"$custom": "Document.UsrZuoraId"}).json()
    filtered = api.get("Invoice", **{"$filter": "cf.String(f='Document.UsrZuoraId') eq '8a8aa0'"}).json()

    assert plain["custom"] == {}
    assert custom["custom"] == {"Document": {"UsrZuoraId": {"type": "CustomStringField", "value": "8a8aa0"}}}
    assert len(filtered) == 1
