# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""Acumatica's own endpoint definitions judge the client and the sandbox.

Every operation ledgerbridge's Acumatica client uses is sent to the sandbox over loopback HTTP,
once for each endpoint version with a vendored definition, with the contract checks on: not one
request or answer may break the definition (the checker's rules are in
``sandbox/acumatica/contract.py`` and docs/vendor-notes.md). The sandbox serves the
definition as ``swagger.json``; an action that finishes at once answers as the vendor's C#
client expects; and the checks bite: a field the definition does not declare, sent or answered,
is a violation.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi

from sandbox.acumatica import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_TENANT,
    DEFAULT_USERNAME,
    create_app,
)
from sandbox.acumatica.contract import AcumaticaChecker
from sandbox.acumatica.vendored import load_definition, vendored_endpoints
from sandbox.contract import (
    RECORDER,
    ContractMiddleware,
    ContractRecorder,
    HttpRequest,
    HttpResponse,
)
from sandbox.server import ThreadedServer
from shared.backoff import no_jitter
from shared.connections import AcumaticaTarget
from shared.erp.acumatica import AcumaticaErp
from shared.erp.acumatica_policy import RetryPolicy
from shared.erp.base import Application, ArDocument, ArLine, Customer, Journal, JournalLine, Payment

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

D = Decimal
TODAY = dt.datetime.now(dt.UTC).date()
ENDPOINTS = vendored_endpoints()
CREDENTIALS = {"name": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD, "tenant": DEFAULT_TENANT}
FAST: dict[str, Any] = {
    "poll_interval": 0.02,
    "poll_max_interval": 0.05,
    "action_timeout": 10.0,
    "timeout": 10.0,
    "policy": RetryPolicy(max_attempts=2, base=0.05, cap=0.2, floor=0.01),
    "jitter": no_jitter,
}
# Every operation the client sends (shared/erp/acumatica*.py and the CLI's connection test).
CLIENT_OPERATIONS = frozenset(
    {
        "GET entity",
        "auth/login",
        "auth/logout",
        "identity/token",
        "Account_GetByKeys",
        "Currency_GetByKeys",
        "Currency_GetList",
        "FinancialPeriod_GetByKeys",
        "Customer_PutEntity",
        "Customer_GetByKeys",
        "Invoice_PutEntity",
        "Invoice_GetList",
        "Invoice_GetByKeys",
        "Invoice_GetById",
        "Invoice_InvokeAction_ReleaseInvoice",
        "Invoice_ReleaseInvoice_Status",
        "Payment_PutEntity",
        "Payment_GetList",
        "Payment_GetByKeys",
        "Payment_InvokeAction_ReleasePayment",
        "Payment_ReleasePayment_Status",
        "JournalTransaction_PutEntity",
        "JournalTransaction_GetList",
        "JournalTransaction_GetByKeys",
        "JournalTransaction_InvokeAction_ReleaseJournalTransaction",
        "JournalTransaction_ReleaseJournalTransaction_Status",
    }
)


def test_the_three_published_default_endpoints_are_vendored():
    assert ENDPOINTS == ("Default/22.200.001", "Default/23.200.001", "Default/24.200.001")


@pytest.fixture(params=ENDPOINTS)
def sandbox(request) -> Iterator[tuple[ThreadedServer, Any, str]]:
    """A sandbox serving one vendored endpoint, checked against its definition."""
    app = create_app(endpoint=request.param, contracts=True)
    with ThreadedServer(app) as server:
        yield server, app.state.backend, request.param


def target(url: str, endpoint: str, **changes: Any) -> AcumaticaTarget:
    return AcumaticaTarget(
        url=url,
        endpoint=endpoint,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        tenant=DEFAULT_TENANT,
        requests_per_minute=60_000,
        max_concurrent=4,
        **changes,
    )


def customer() -> Customer:
    return Customer(
        customer_id="ZA0001",
        name="Acme Corp",
        currency="USD",
        zuora_account_id="2c92c0f8-acme",
        zuora_account_number="A00000001",
        email="ap@acme.example",
        customer_class="DEFAULT",
        city="Austin",
        country="US",
    )


def document(kind: str, number: str, amount: str, applies_to=()) -> ArDocument:
    return ArDocument(
        kind=kind,  # type: ignore[arg-type]
        natural_key=number,
        customer_id="ZA0001",
        date=TODAY,
        currency="USD",
        description=f"Zuora {number}",
        lines=(
            ArLine(description="plan", amount=D(amount), account="40000", subaccount="000000", branch="HQ"),
        ),
        due_date=None if kind == "credit_memo" else TODAY + dt.timedelta(days=30),
        post_period=TODAY,
        applies_to=tuple(applies_to),
    )


def payment(kind: str, number: str, amount: str, applications=()) -> Payment:
    return Payment(
        kind=kind,  # type: ignore[arg-type]
        natural_key=number,
        customer_id="ZA0001",
        date=TODAY,
        amount=D(amount),
        currency="USD",
        payment_method="CHECK",
        cash_account="10200",
        description=f"Zuora {number}",
        applications=tuple(applications),
    )


def journal(number: str) -> Journal:
    return Journal(
        natural_key=number,
        date=TODAY,
        post_period=TODAY,
        currency="USD",
        ledger="ACTUAL",
        branch="HQ",
        description="Invoice Item",
        lines=(
            JournalLine(account="11000", subaccount="000000", debit=D("12.34"), description="AR"),
            JournalLine(account="40000", subaccount="000000", credit=D("12.34"), description="Revenue"),
        ),
    )


def seen_since(before: Counter[tuple[str, str]]) -> set[str]:
    return {op for (api, op), n in (RECORDER.operations - before).items() if api == "acumatica" and n}


# -- every operation the client uses, for every vendored version ------------------------------------


@pytest.mark.redis
def test_every_client_operation_keeps_to_the_endpoint_definition(sandbox, real_redis, connection_name):
    server, backend, endpoint = sandbox
    mark, before = RECORDER.mark(), Counter(RECORDER.operations)
    erp = AcumaticaErp.from_target(
        target(server.url, endpoint), connection=connection_name, redis=real_redis, **FAST
    )
    try:
        assert erp.check_reference_data(["11000", "40000"], ["USD"], TODAY) == []
        assert {row["CurrencyID"] for row in erp.client.get_list("Currency", select=["CurrencyID", "Active"])}
        erp.upsert_customer(customer())
        assert erp.find_document("customer", "ZA0001") is not None

        invoice = erp.release(erp.create_document(document("invoice", "INV00000001", "100.00")))
        erp.release(erp.create_document(document("debit_memo", "DM00000001", "10.00")))
        credit = erp.create_document(
            document(
                "credit_memo",
                "CM00000001",
                "20.00",
                [Application(natural_key="INV00000001", amount=D("20.00"))],
            )
        )
        erp.release(credit)
        paid = erp.create_payment(
            payment(
                "payment",
                "P-00000001",
                "90.00",
                [
                    Application(natural_key="INV00000001", amount=D("80.00")),
                    Application(natural_key="DM00000001", amount=D("10.00"), kind="debit_memo"),
                ],
            )
        )
        erp.release(paid)
        erp.release(erp.create_payment(payment("payment", "P-00000002", "50.00")))
        erp.release(
            erp.create_payment(
                payment(
                    "refund",
                    "R-00000001",
                    "30.00",
                    [Application(natural_key="P-00000002", amount=D("30.00"), kind="payment")],
                )
            )
        )
        batch = erp.release(erp.post_journal(journal("JE-00000001")))
        assert batch.released
        assert erp.journal_totals(natural_keys=["JE-00000001"]) == erp.journal_totals(period=TODAY)

        # An action that completes at once: 204, whose Location is the processed record's URL.
        backend.config.update({"action_polls": 0})
        done = erp.release(erp.create_document(document("invoice", "INV00000002", "5.00")))
        assert done.released and invoice.released
        # A record by its session id (the 204's Location names it so).
        assert erp.client.get_record("Invoice", str(done.erp_id), select=["Status"])["Status"] == "Open"
    finally:
        erp.close()  # logs the cookie session out

    oauth = AcumaticaErp.from_target(
        target(server.url, endpoint, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET),
        connection=f"{connection_name}-oauth",
        redis=real_redis,
        **FAST,
    )
    try:
        assert oauth.find_document("invoice", "INV00000001") is not None
    finally:
        oauth.close()  # logs the bearer session out

    assert [str(v) for v in RECORDER.since(mark)] == []
    assert sorted(CLIENT_OPERATIONS - seen_since(before)) == []


# -- what the vendor's own client expects of an action ----------------------------------------------


def parse_action_location(location: str) -> dict[str, str | None]:
    """Acumatica.RESTClient's UrlParser.ParseActionLocation, as the vendor's client reads a Location."""
    index = location.lower().index("/entity/")
    parts = [p for p in location[index:].split("/") if p]
    return {
        "site": location[:index],
        "endpoint": parts[1],
        "version": parts[2],
        "entity": parts[3],
        "action": parts[4] if len(parts) == 7 else None,
        "id": parts[-1],
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_action_is_answered_as_the_vendors_client_expects(endpoint):
    # The C# client's InvokeAction reads the Location of every success (202 and 204 alike), and
    # WaitActionCompletion polls it only when it names an action's status; otherwise the action
    # is complete. So a finished action's 204 points at the processed record, which GET returns.
    mark = RECORDER.mark()
    app = create_app(endpoint=endpoint, site_path="/AcumaticaERP", contracts=True)
    base = f"/AcumaticaERP/entity/{endpoint}"
    with TestClient(app) as client:
        assert client.post("/AcumaticaERP/entity/auth/login", json=CREDENTIALS).status_code == 204
        app.state.backend.add_customer("C0001", "C0001 Inc.")
        body = {
            "Customer": {"value": "C0001"},
            "Date": {"value": f"{TODAY.isoformat()}T00:00:00"},
            "Hold": {"value": False},
            "Details": [{"Account": {"value": "40000"}, "UnitPrice": {"value": 10}, "Qty": {"value": 1}}],
        }
        first, second = (client.put(f"{base}/Invoice", json=body).json() for _ in range(2))

        running = client.post(f"{base}/Invoice/ReleaseInvoice", json={"entity": {"id": first["id"]}})
        parsed = parse_action_location(running.headers["location"])
        assert running.status_code == 202
        assert (parsed["site"], parsed["entity"], parsed["action"]) == (
            "/AcumaticaERP",
            "Invoice",
            "ReleaseInvoice",
        )
        polls = [client.get(running.headers["location"]).status_code for _ in range(2)]
        assert polls == [202, 204]  # one poll still running (the sandbox's default), then done

        app.state.backend.config.update({"action_polls": 0})
        finished = client.post(f"{base}/Invoice/ReleaseInvoice", json={"entity": {"id": second["id"]}})
        parsed = parse_action_location(finished.headers["location"])
        assert finished.status_code == 204
        assert parsed["action"] is None and parsed["id"] == second["id"]
        record = client.get(finished.headers["location"])
        assert record.status_code == 200
        assert (record.json()["id"], record.json()["Status"]) == (second["id"], {"value": "Open"})
    assert [str(v) for v in RECORDER.since(mark)] == []


# -- swagger.json -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_swagger_json_is_the_vendors_definition_pointing_at_the_sandbox(endpoint):
    mark = RECORDER.mark()
    app = create_app(endpoint=endpoint, site_path="/AcumaticaERP", contracts=True)
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url) as client:
        url = f"/AcumaticaERP/entity/{endpoint}/swagger.json"
        anonymous = client.get(url)
        assert client.post("/AcumaticaERP/entity/auth/login", json=CREDENTIALS).status_code == 204
        signed_in = client.get(url)
        by_company = httpx.get(f"{server.url}{url}", params={"company": DEFAULT_TENANT})
        other = client.get("/AcumaticaERP/entity/Default/20.200.001/swagger.json")

    vendored = load_definition(endpoint)
    assert vendored is not None
    assert anonymous.status_code == 401  # it describes the signed-in user's tenant
    assert other.status_code == 404  # only the served endpoint resolves
    assert signed_in.status_code == by_company.status_code == 200
    document = signed_in.json()
    assert document == by_company.json()
    assert document["paths"] == vendored["paths"]
    assert document["info"]["title"] == endpoint
    served_at = f"{server.url}/AcumaticaERP/entity/{endpoint}"
    if "openapi" in document:
        assert document["servers"] == [{"url": served_at}]
        assert document["components"] == vendored["components"]
        validate_openapi(document)  # a third-party OpenAPI client can start from it
    else:
        assert (document["schemes"], document["host"], document["basePath"]) == (
            ["http"],
            f"127.0.0.1:{server.port}",
            f"/AcumaticaERP/entity/{endpoint}",
        )
        assert document["definitions"] == vendored["definitions"]
    # The anonymous 401 is a documented answer, not a violation.
    assert [str(v) for v in RECORDER.since(mark)] == []


def test_openid_configuration_holds_the_discovery_members():
    mark = RECORDER.mark()
    with TestClient(create_app(contracts=True)) as client:
        body = client.get("/identity/.well-known/openid-configuration").json()
    assert body["token_endpoint"].endswith("/identity/connect/token")
    assert {"jwks_uri", "response_types_supported", "subject_types_supported"} <= set(body)
    assert [str(v) for v in RECORDER.since(mark)] == []


# -- the check bites ----------------------------------------------------------------------------------

PUT_INVOICE = "/entity/Default/24.200.001/Invoice"
JSON = (("content-type", "application/json"),)


def request(method: str, path: str, body: Any = None, query: tuple[tuple[str, str], ...] = ()) -> HttpRequest:
    raw = b"" if body is None else json.dumps(body).encode()
    headers = JSON + ((("content-length", str(len(raw))),) if raw else ())
    return HttpRequest(method=method, path=path, query=query, headers=headers, body=raw)


def answer(status: int, body: Any, headers: tuple[tuple[str, str], ...] = JSON) -> HttpResponse:
    return HttpResponse(status=status, headers=headers, body=json.dumps(body).encode())


RECORD = {
    "id": str(uuid.uuid4()),
    "rowNumber": 1,
    "note": {"value": ""},
    "Type": {"value": "Invoice"},
    "ReferenceNbr": {"value": "AR000001"},
    "Amount": {"value": 10.0},
    "Date": {"value": "2025-06-10T00:00:00+00:00"},
    "custom": {},
    "_links": {"self": f"{PUT_INVOICE}/x"},
}


def test_the_checker_accepts_a_record_the_definition_describes():
    checker = AcumaticaChecker()
    sent = request(
        "PUT", PUT_INVOICE, {"Customer": {"value": "C1"}, "Hold": {"value": False}}, (("$expand", "Details"),)
    )

    assert checker.check_request(sent).problems == ()
    assert checker.check_request(sent).operation == "Invoice_PutEntity"
    assert checker.check_response(sent, answer(200, RECORD)).problems == ()


@pytest.mark.parametrize(
    ("body", "query", "expected"),
    [
        ({"Customer": {"value": "C1"}, "Nickname": {"value": "x"}}, (), "'Nickname' was unexpected"),
        ({"Customer": {"value": "C1", "label": "x"}}, (), "'label' was unexpected"),
        ({"Customer": "C1"}, (), "body.Customer: 'C1' is not of type 'object'"),
        ({"Hold": {"value": "no"}}, (), "body.Hold.value: 'no' is not of type 'boolean'"),
        ({"Date": {"value": "2025-06-10"}}, (), "body.Date.value: '2025-06-10' is not a 'date-time'"),
        ({"Details": [{"Account": {"value": "4"}, "Memo": {"value": "x"}}]}, (), "'Memo' was unexpected"),
        ({"Customer": {"value": "C1"}}, (("$orderby", "Date"),), "query parameter $orderby is not declared"),
        ({"Customer": {"value": "C1"}}, (("$top", "5"),), "query parameter $top is not declared"),
    ],
)
def test_the_checker_refuses_what_the_definition_does_not_declare_in_a_request(body, query, expected):
    checked = AcumaticaChecker().check_request(request("PUT", PUT_INVOICE, body, query))

    assert checked.operation == "Invoice_PutEntity"
    assert any(expected in problem for problem in checked.problems), checked.problems


def test_the_checker_refuses_an_undeclared_field_in_an_answer_and_an_undeclared_status():
    checker = AcumaticaChecker()
    asked = request("GET", f"{PUT_INVOICE}/Invoice/AR000001")

    extra = checker.check_response(asked, answer(200, {**RECORD, "Nickname": {"value": "x"}}))
    wrapped = checker.check_response(asked, answer(200, {**RECORD, "Amount": {"value": "10.00"}}))
    status = checker.check_response(asked, answer(422, RECORD))

    assert extra.operation == "Invoice_GetByKeys"
    assert extra.problems == ("body: Additional properties are not allowed ('Nickname' was unexpected)",)
    assert wrapped.problems == ("body.Amount.value: '10.00' is not of type 'number'",)
    assert status.problems == ("Invoice_GetByKeys does not declare status 422",)


def test_the_checker_refuses_an_action_answer_the_vendors_client_cannot_follow():
    checker = AcumaticaChecker()
    asked = request("POST", f"{PUT_INVOICE}/ReleaseInvoice", {"entity": {"id": RECORD["id"]}})
    no_location = HttpResponse(status=204, headers=(), body=b"")
    status_url = HttpResponse(
        status=204, headers=(("location", f"{PUT_INVOICE}/ReleaseInvoice/status/{uuid.uuid4()}"),), body=b""
    )

    assert checker.check_request(
        request("POST", f"{PUT_INVOICE}/ReleaseInvoice", {"entity": {}, "parameters": {}})
    ).problems == ("body: Additional properties are not allowed ('parameters' was unexpected)",)
    assert checker.check_response(asked, no_location).problems == (
        "204 of an action must carry a Location header",
    )
    assert "is not the processed record's URL" in checker.check_response(asked, status_url).problems[0]


async def _record_app(scope, receive, send) -> None:
    """A stand-in server answering every request with RECORD plus a field no definition has."""
    body = json.dumps({**RECORD, "Nickname": {"value": "x"}}).encode()
    while (await receive()).get("more_body"):
        pass
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


# Sends a field the definition does not declare (and answers one) on purpose: the check must bite.
@pytest.mark.vendor_contract_exempt
def test_the_middleware_records_an_undeclared_field_in_a_request_and_in_an_answer():
    recorder = ContractRecorder()
    app = ContractMiddleware(_record_app, AcumaticaChecker(), recorder=recorder)
    TestClient(app).put(PUT_INVOICE, json={"Customer": {"value": "C1"}, "Nickname": {"value": "x"}})

    [asked, answered] = recorder.violations
    assert (asked.direction, asked.operation, asked.problems) == (
        "request",
        "Invoice_PutEntity",
        ("body: Additional properties are not allowed ('Nickname' was unexpected)",),
    )
    assert (answered.direction, answered.status, answered.problems) == (
        "response",
        200,
        ("body: Additional properties are not allowed ('Nickname' was unexpected)",),
    )
    assert recorder.operations[("acumatica", "Invoice_PutEntity")] == 2


# Sends a field the definition does not declare on purpose, to the real sandbox: the check must bite.
@pytest.mark.vendor_contract_exempt
def test_the_sandbox_records_an_undeclared_field_its_client_sent():
    mark = RECORDER.mark()
    with TestClient(create_app(contracts=True)) as client:
        client.post("/entity/auth/login", json=CREDENTIALS)
        client.put(PUT_INVOICE, json={"CustomerID": {"value": "C0001"}})  # Payment's name, not Invoice's

    found = RECORDER.since(mark)
    assert [(v.direction, v.operation, v.problems) for v in found] == [
        (
            "request",
            "Invoice_PutEntity",
            ("body: Additional properties are not allowed ('CustomerID' was unexpected)",),
        )
    ]


def test_an_endpoint_without_a_vendored_definition_may_only_be_refused():
    # Acumatica publishes no definition of Default/25.200.001 (nor 20.200.001) in its repository.
    checker = AcumaticaChecker()
    asked = request("GET", "/entity/Default/25.200.001/Invoice")
    refused = answer(404, {"message": "No HTTP resource was found that matches the request URI."})

    assert checker.check_request(asked).problems == ()
    assert checker.check_response(asked, refused).problems == ()
    assert checker.check_response(asked, answer(200, [])).problems == (
        "endpoint Default/25.200.001 has no vendored definition, yet was served",
    )
