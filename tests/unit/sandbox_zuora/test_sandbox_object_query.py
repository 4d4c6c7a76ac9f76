"""Object Query behaviour of the Zuora sandbox (zuora-api.md section 9)."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter

import pytest

from sandbox.zuora import Sizes, ZuoraBackend, create_app

from .conftest import MODERN, ManualClock, TestClient, fetch_token

OQ_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")


def _pages(client: TestClient, path: str, headers: dict[str, str], params: dict) -> list[dict]:
    pages, cursor = [], None
    for _ in range(100):  # bounded: a cursor loop must end
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        response = client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        cursor = body.get("nextPage")
        if cursor is None:
            return pages
    raise AssertionError("paging did not finish")


@pytest.fixture
def big(clock: ManualClock):
    backend = ZuoraBackend(clock=clock)
    backend.seed(
        11,
        Sizes(
            accounts=50,
            invoices=1000,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            tie_count=150,
            large_invoices=0,
        ),
    )
    with TestClient(create_app(backend)) as client:
        yield client, {"Authorization": f"Bearer {fetch_token(client)}", "Zuora-Version": MODERN}


def test_paging_returns_each_of_1000_invoices_once_when_150_share_an_updated_date(big):
    client, auth = big
    stored = client.get("/_sandbox/state/invoices").json()["records"]
    ties = Counter(r["UpdatedDate"] for r in stored).most_common(1)[0]
    lowest = min(r["UpdatedDate"] for r in stored)

    pages = _pages(
        client,
        "/object-query/invoices",
        auth,
        {
            "pageSize": 99,
            "sort[]": "updateddate.ASC",
            "filter[]": f"updateddate.GE:{lowest}",
            "fields[]": "id,updateddate",
        },
    )

    ids = [row["id"] for page in pages for row in page["data"]]
    stamps = [row["updatedDate"] for page in pages for row in page["data"]]
    assert ties[1] == 150
    assert len(pages) == 11
    assert len(ids) == 1000
    assert set(ids) == {r["Id"] for r in stored}
    assert stamps == sorted(stamps)
    tie_pages = [i for i, page in enumerate(pages) if any(r["updatedDate"] == ties[0] for r in page["data"])]
    assert len(tie_pages) >= 2  # a page boundary falls inside the tie


def test_paging_default_order_is_updated_date_desc_then_id_desc(big):
    client, auth = big

    pages = _pages(client, "/object-query/invoices", auth, {"pageSize": 99, "fields[]": "id,updateddate"})

    rows = [(r["updatedDate"], r["id"]) for page in pages for r in page["data"]]
    assert len(rows) == 1000 and len(set(rows)) == 1000
    cursor = json.loads(base64.b64decode(pages[0]["nextPage"]))
    assert [k["orderBy"] for k in cursor] == [
        {"field": "UpdatedDate", "order": "DESC"},
        {"field": "Id", "order": "DESC"},
    ]
    assert cursor[1]["value"] == pages[0]["data"][-1]["id"]


@pytest.mark.vendor_contract_exempt  # out-of-range pageSize, on purpose
@pytest.mark.parametrize("size", ["0", "100", "-1", "ten"])
def test_page_size_outside_1_to_99_is_400(client: TestClient, auth: dict, size: str):
    response = client.get("/object-query/invoices", params={"pageSize": size}, headers=auth)

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"reasons", "requestId"}
    assert body["requestId"] == response.headers["Zuora-Request-Id"]


def test_last_page_has_no_next_page_key(client: TestClient, auth: dict):
    body = client.get("/object-query/accounts", params={"pageSize": 99}, headers=auth).json()

    assert "nextPage" not in body
    assert len(body["data"]) == 12


def test_empty_result_is_data_only(client: TestClient, auth: dict):
    body = client.get(
        "/object-query/invoices", params={"filter[]": "invoicenumber.EQ:INV99999999"}, headers=auth
    ).json()

    assert body == {"data": []}


def test_keys_are_camel_case_with_first_letter_lowered(client: TestClient, auth: dict, backend: ZuoraBackend):
    invoice = backend.state("invoices")[0]
    items = client.get(
        "/object-query/invoice-items", params={"filter[]": f"invoiceid.EQ:{invoice['Id']}"}, headers=auth
    ).json()["data"]
    accounts = client.get("/object-query/accounts", params={"pageSize": 99}, headers=auth).json()["data"]

    assert {"sKU", "uOM", "chargeAmount", "invoiceId"} <= set(items[0])
    assert "amount" not in items[0]
    assert any("eRPAccountId__c" in a for a in accounts)


def test_null_fields_are_omitted_unless_asked_for(client: TestClient, auth: dict):
    omitted = client.get("/object-query/invoices", params={"pageSize": 1}, headers=auth).json()["data"][0]
    included = client.get(
        "/object-query/invoices", params={"pageSize": 1, "includeNullFields": "true"}, headers=auth
    ).json()["data"][0]

    assert "transferredToAccounting" not in omitted
    assert included["transferredToAccounting"] is None


def test_datetimes_carry_an_offset_and_no_millis(client: TestClient, auth: dict):
    row = client.get("/object-query/payments", params={"pageSize": 1}, headers=auth).json()["data"][0]

    assert OQ_DATETIME.match(row["updatedDate"])
    assert OQ_DATETIME.match(row["createdDate"])
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", row["effectiveDate"])


def test_filter_on_undocumented_field_is_400_category_27(client: TestClient, auth: dict):
    response = client.get(
        "/object-query/invoices", params={"filter[]": "transferredtoaccounting.EQ:Yes"}, headers=auth
    )

    assert response.status_code == 400
    assert response.json()["reasons"][0]["code"] == 50000027


def test_invoice_items_without_filter_is_400(client: TestClient, auth: dict):
    response = client.get("/object-query/invoice-items", headers=auth)

    assert response.status_code == 400
    assert response.json()["reasons"][0]["code"] == 50000023


def test_filter_field_names_are_case_insensitive(client: TestClient, auth: dict):
    lower = client.get(
        "/object-query/accounts", params={"filter[]": "currency.EQ:usd", "pageSize": 99}, headers=auth
    ).json()["data"]
    camel = client.get(
        "/object-query/accounts", params={"filter[]": "Currency.EQ:USD", "pageSize": 99}, headers=auth
    ).json()["data"]

    assert lower == camel
    assert lower and all(row["currency"] == "USD" for row in lower)


def test_currency_is_not_filterable_on_invoices(client: TestClient, auth: dict):
    # Only the documented fields filter (section 9.4); currency is not one of them for invoices.
    response = client.get("/object-query/invoices", params={"filter[]": "currency.EQ:USD"}, headers=auth)

    assert response.status_code == 400


def test_filters_are_anded_and_support_in_sw_and_null(client: TestClient, auth: dict, backend: ZuoraBackend):
    accounts = backend.state("accounts")
    without_erp = [a["Id"] for a in accounts if a.get("ERPAccountId__c") is None]

    in_list = client.get(
        "/object-query/accounts",
        params=[("filter[]", "currency.IN:[EUR,GBP]"), ("filter[]", "status.EQ:active"), ("pageSize", "99")],
        headers=auth,
    ).json()["data"]
    starts = client.get(
        "/object-query/accounts",
        params={"filter[]": "accountnumber.SW:a0000000", "pageSize": 99},
        headers=auth,
    ).json()["data"]
    nulls = client.get(
        "/object-query/accounts", params={"filter[]": "erpaccountid__c.EQ:null", "pageSize": 99}, headers=auth
    ).json()["data"]

    assert sorted(r["id"] for r in in_list) == sorted(a["Id"] for a in accounts if a["Currency"] != "USD")
    assert sorted(r["accountNumber"] for r in starts) == [f"A{n:08d}" for n in range(1, 10)]
    assert sorted(r["id"] for r in nulls) == sorted(without_erp)


def test_unencoded_plus_offset_in_filter_is_400(client: TestClient, auth: dict):
    # '+' in a query string is a space; a client must send %2B (section 9.2).
    response = client.get(
        "/object-query/invoices?filter[]=updateddate.GT:2024-12-01T00:00:00+01:00", headers=auth
    )
    encoded = client.get(
        "/object-query/invoices",
        params={"filter[]": "updateddate.GT:2024-12-01T00:00:00+01:00"},
        headers=auth,
    )

    assert response.status_code == 400
    assert encoded.status_code == 200


def test_expanded_children_are_truncated_to_page_size(clock: ManualClock):
    backend = ZuoraBackend(clock=clock)
    backend.seed(
        5,
        Sizes(
            accounts=3,
            invoices=5,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            large_invoices=1,
            large_invoice_items=120,
        ),
    )
    large = next(
        i
        for i in backend.state("invoices")
        if len([x for x in backend.state("invoice-items") if x["InvoiceId"] == i["Id"]]) == 120
    )
    with TestClient(create_app(backend)) as client:
        auth = {"Authorization": f"Bearer {fetch_token(client)}"}
        listed = client.get(
            "/object-query/invoices",
            params={"pageSize": 99, "expand[]": "invoiceitems", "filter[]": f"id.EQ:{large['Id']}"},
            headers=auth,
        ).json()
        items = _pages(
            client,
            "/object-query/invoice-items",
            auth,
            {"pageSize": 99, "filter[]": f"invoiceid.EQ:{large['Id']}"},
        )

    assert len(listed["data"][0]["invoiceItems"]) == 99
    assert sum(len(p["data"]) for p in items) == 120


def test_by_key_accepts_id_or_number_and_404s(client: TestClient, auth: dict, backend: ZuoraBackend):
    invoice = backend.state("invoices")[0]

    by_id = client.get(f"/object-query/invoices/{invoice['Id']}", headers=auth)
    by_number = client.get(f"/object-query/invoices/{invoice['InvoiceNumber']}", headers=auth)
    missing = client.get("/object-query/invoices/INV99999999", headers=auth)

    assert by_id.json() == by_number.json()
    assert by_id.json()["invoiceNumber"] == invoice["InvoiceNumber"]
    assert missing.status_code == 404
    assert missing.json()["reasons"][0]["code"] == 50000040


@pytest.mark.vendor_contract_exempt  # <expand>.fields[]: Zuora's reference pages describe it, its OpenAPI document does not
def test_fields_and_child_fields_select_output(client: TestClient, auth: dict):
    row = client.get(
        "/object-query/invoices",
        params=[
            ("pageSize", "1"),
            ("fields[]", "id,InvoiceNumber"),
            ("expand[]", "invoiceitems"),
            ("invoiceitems.fields[]", "id,sku"),
            ("expand[]", "account.billto"),
            ("account.billto.fields[]", "country"),
            ("account.fields[]", "name"),
        ],
        headers=auth,
    ).json()["data"][0]

    assert set(row) == {"id", "invoiceNumber", "invoiceItems", "account"}
    assert all(set(item) == {"id", "sKU"} for item in row["invoiceItems"])
    assert set(row["account"]) == {"name", "billTo"}
    assert set(row["account"]["billTo"]) == {"country"}


def test_unknown_expand_or_field_is_400(client: TestClient, auth: dict):
    bad_expand = client.get("/object-query/invoices", params={"expand[]": "payments"}, headers=auth)
    bad_field = client.get("/object-query/invoices", params={"fields[]": "nosuchfield"}, headers=auth)

    assert bad_expand.status_code == 400
    assert bad_field.status_code == 400


def test_cursor_from_another_sort_or_garbage_is_400(client: TestClient, auth: dict):
    cursor = client.get("/object-query/invoices", params={"pageSize": 2}, headers=auth).json()["nextPage"]

    other_sort = client.get(
        "/object-query/invoices", params={"cursor": cursor, "sort[]": "invoicedate.ASC"}, headers=auth
    )
    garbage = client.get("/object-query/invoices", params={"cursor": "not-a-cursor"}, headers=auth)

    assert other_sort.status_code == 400
    assert garbage.status_code == 400


@pytest.mark.vendor_contract_exempt  # pageSize 0, on purpose
def test_older_version_gets_string_codes_without_request_id(client: TestClient, auth: dict):
    response = client.get(
        "/object-query/invoices", params={"pageSize": 0}, headers={**auth, "Zuora-Version": "2024-05-20"}
    )

    assert response.status_code == 400
    reason = response.json()["reasons"][0]
    assert isinstance(reason["code"], str)
    assert "requestId" not in response.json()


def test_update_bumps_updated_date_and_resurfaces_record(
    client: TestClient, auth: dict, clock: ManualClock, backend: ZuoraBackend
):
    newest = client.get("/object-query/payments", params={"pageSize": 1}, headers=auth).json()["data"][0]
    target = backend.state("payments")[-1]
    clock.advance(60)

    client.put(
        f"/v1/payments/{target['Id']}",
        json={"financeInformation": {"transferredToAccounting": "Yes"}},
        headers=auth,
    )

    after = client.get(
        "/object-query/payments",
        params=[("filter[]", f"updateddate.GT:{newest['updatedDate']}"), ("pageSize", "99")],
        headers=auth,
    ).json()["data"]
    assert [row["id"] for row in after] == [target["Id"]]
    assert after[0]["transferredToAccounting"] == "Yes"


def test_responses_over_1000_bytes_are_gzipped_on_request(client: TestClient, auth: dict):
    response = client.get(
        "/object-query/invoices", params={"pageSize": 50}, headers={**auth, "Accept-Encoding": "gzip"}
    )

    assert response.headers["Content-Encoding"] == "gzip"
    assert len(response.json()["data"]) == 50
