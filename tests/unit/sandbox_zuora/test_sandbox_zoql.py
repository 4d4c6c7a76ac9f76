"""ZOQL through POST /v1/action/query and queryMore (zuora-api.md section 5)."""

from __future__ import annotations

import re

import pytest

from sandbox.zuora import Sizes, ZuoraBackend, create_app, zoql

from .conftest import ManualClock, TestClient, fetch_token


def test_parse_unescapes_backslash_apostrophe():
    query = zoql.parse(r"select Id, Name from AccountingPeriod where Name = 'Dec\'16'")

    assert query.object_name == "AccountingPeriod"
    assert query.where[0][0].value == "Dec'16"


def test_parse_or_binds_looser_than_and():
    query = zoql.parse("select Id from Invoice where Status = 'Posted' and Amount > 10 or Balance = 0")

    assert [[c.field for c in group] for group in query.where] == [["Status", "Amount"], ["Balance"]]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT Id FROM Invoice",
        "select Id from Invoice WHERE Status = 'Posted'",
        "select * from Invoice",
        "select Id from Invoice where Name = 'Dec''16'",
        "select Id from Invoice where (Status = 'Posted')",
    ],
)
def test_parse_rejects_what_zoql_rejects(text: str):
    with pytest.raises(zoql.ZoqlError):
        zoql.parse(text)


@pytest.fixture
def dec16(clock: ManualClock):
    backend = ZuoraBackend(clock=clock)
    backend.seed(
        3,
        Sizes(
            month="2016-12",
            period_names="apostrophe",
            periods=3,
            accounts=4,
            invoices=10,
            payments=5,
            refunds=1,
            credit_memos=1,
            debit_memos=1,
        ),
    )
    with TestClient(create_app(backend)) as client:
        yield client, {"Authorization": f"Bearer {fetch_token(client)}"}


def test_period_named_with_apostrophe_is_found_by_escaped_literal(dec16):
    client, auth = dec16
    query = r"select Id, Name, Status, StartDate from AccountingPeriod where Name = 'Dec\'16'"

    body = client.post("/v1/action/query", json={"queryString": query}, headers=auth).json()

    assert body["size"] == 1 and body["done"] is True
    assert body["records"][0]["Name"] == "Dec'16"
    assert body["records"][0]["StartDate"] == "2016-12-01"
    assert body["records"][0]["Status"] == "Open"


def test_unescaped_apostrophe_is_a_malformed_query(dec16):
    client, auth = dec16

    response = client.post(
        "/v1/action/query",
        headers=auth,
        json={"queryString": "select Id from AccountingPeriod where Name = 'Dec'16'"},
    )

    assert response.status_code == 400
    assert response.json()["FaultCode"] == "MALFORMED_QUERY"


def test_id_is_always_returned_and_nulls_omitted(client: TestClient, auth: dict):
    body = client.post(
        "/v1/action/query",
        headers=auth,
        json={"queryString": "select InvoiceNumber, TransferredToAccounting from Invoice"},
    ).json()

    assert body["size"] == 60
    assert all(set(r) == {"Id", "InvoiceNumber"} for r in body["records"])


def test_datetimes_use_the_zoql_format(client: TestClient, auth: dict):
    record = client.post(
        "/v1/action/query", headers=auth, json={"queryString": "select UpdatedDate, InvoiceDate from Invoice"}
    ).json()["records"][0]

    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000[+-]\d{2}:\d{2}$", record["UpdatedDate"])
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", record["InvoiceDate"])


def test_where_filters_by_typed_values(client: TestClient, auth: dict, backend: ZuoraBackend):
    expected = {r["Id"] for r in backend.state("invoices") if r["Status"] == "Posted" and r["Amount"] > 1000}

    body = client.post(
        "/v1/action/query",
        headers=auth,
        json={
            "queryString": "select Id from Invoice where Status = 'Posted' and Amount > 1000 "
            "and TransferredToAccounting != 'Yes'"
        },
    ).json()

    assert {r["Id"] for r in body["records"]} == expected


def test_batches_continue_with_query_more(client: TestClient, auth: dict):
    first = client.post(
        "/v1/action/query",
        headers=auth,
        json={"queryString": "select Id from Invoice", "conf": {"batchSize": 25}},
    ).json()
    second = client.post(
        "/v1/action/queryMore",
        headers=auth,
        json={"queryLocator": first["queryLocator"], "conf": {"batchSize": 25}},
    ).json()
    third = client.post(
        "/v1/action/queryMore",
        headers=auth,
        json={"queryLocator": second["queryLocator"], "conf": {"batchSize": 25}},
    ).json()

    assert (first["size"], first["done"]) == (25, False)
    assert (second["size"], second["done"]) == (25, False)
    assert (third["size"], third["done"]) == (10, True) and "queryLocator" not in third
    ids = [r["Id"] for b in (first, second, third) for r in b["records"]]
    assert len(set(ids)) == 60


def test_expired_query_locator_is_rejected(client: TestClient, auth: dict, clock: ManualClock):
    first = client.post(
        "/v1/action/query",
        headers=auth,
        json={"queryString": "select Id from Invoice", "conf": {"batchSize": 10}},
    ).json()
    clock.advance(901)

    response = client.post("/v1/action/queryMore", headers=auth, json={"queryLocator": first["queryLocator"]})

    assert response.status_code == 400
    assert response.json()["FaultCode"] == "INVALID_QUERY_LOCATOR"


def test_invoice_settlement_objects_are_not_queryable(client: TestClient, auth: dict):
    response = client.post(
        "/v1/action/query", headers=auth, json={"queryString": "select Id from CreditMemo"}
    )

    assert response.status_code == 400
    assert response.json()["FaultCode"] == "INVALID_TYPE"


def test_unknown_field_is_invalid_field(client: TestClient, auth: dict):
    response = client.post("/v1/action/query", headers=auth, json={"queryString": "select Nope from Invoice"})

    assert response.json() == {
        "FaultCode": "INVALID_FIELD",
        "FaultMessage": "invalid field for query: Invoice.Nope",
    }


def test_fiscal_quarter_needs_wsdl_81(client: TestClient, auth: dict):
    query = {"queryString": "select Name, FiscalQuarter from AccountingPeriod"}

    default = client.post("/v1/action/query", headers=auth, json=query)
    newer = client.post("/v1/action/query", headers={**auth, "X-Zuora-WSDL-Version": "81"}, json=query)

    assert default.status_code == 400
    assert newer.status_code == 200
    assert all("FiscalQuarter" in r for r in newer.json()["records"])
