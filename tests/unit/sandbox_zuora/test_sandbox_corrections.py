"""Zuora's corrections over HTTP: invoice reversal and write-off, credit memo reversal, applying and
unapplying payments and credit memos, refunds of payments. Each test reads the result back the way
ledgerbridge does (Object Query with the applications expanded) and checks the refusals."""

from __future__ import annotations

from typing import Any

from sandbox.zuora import ZuoraBackend

from .conftest import ManualClock, TestClient


def _invoice(client: TestClient, *amounts: tuple[int, int]) -> dict[str, Any]:
    items = [{"ChargeAmount": charge, "TaxAmount": tax} for charge, tax in amounts]
    created = client.post("/_sandbox/records/invoices", json={"items": items})
    assert created.status_code == 201, created.text
    return dict(created.json())


def _payment(client: TestClient, invoice: dict[str, Any], amount: int | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"invoiceId": invoice["Id"], "Type": "External"}
    if amount is not None:
        fields["Amount"] = amount
    return dict(client.post("/_sandbox/records/payments", json=fields).json())


def _query(client: TestClient, auth: dict, path: str, key: str, expand: str) -> dict[str, Any]:
    response = client.get(f"/object-query/{path}/{key}", params={"expand[]": expand}, headers=auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _refused(response: Any, words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False
    assert words in body["reasons"][0]["message"]


def test_reversing_an_invoice_creates_an_applied_credit_memo_mirroring_its_items(
    client: TestClient, auth: dict, backend: ZuoraBackend, clock: ManualClock
):
    invoice = _invoice(client, (100, 8), (20, 0))
    clock.advance(60)

    response = client.put(f"/v1/invoices/{invoice['InvoiceNumber']}/reverse", headers=auth, json={})

    assert response.status_code == 200, response.text
    body = response.json()
    memo_id = body["creditMemo"]["id"]
    assert body == {
        "success": True,
        "id": invoice["Id"],
        "creditMemo": {"id": memo_id},
        "creditMemos": [{"id": memo_id}],
    }
    after = backend.state_record("invoices", invoice["Id"])
    assert (after["Balance"], after["CreditMemoAmount"], after["Reversed"]) == (0, 128, True)
    assert after["UpdatedDate"] > invoice["UpdatedDate"]
    memo = _query(client, auth, "credit-memos", memo_id, "creditmemoitems")
    assert (memo["totalAmount"], memo["balance"], memo["appliedAmount"]) == (128, 0, 128)
    assert (memo["reasonCode"], memo["sourceType"], memo["invoiceId"]) == (
        "Invoice reversal",
        "Invoice",
        invoice["Id"],
    )
    invoice_items = {i["Id"]: i for i in backend.state("invoice-items") if i["InvoiceId"] == invoice["Id"]}
    mirrored = {i["invoiceItemId"]: (i["amountWithoutTax"], i["taxAmount"]) for i in memo["creditMemoItems"]}
    assert mirrored == {k: (i["ChargeAmount"], i["TaxAmount"]) for k, i in invoice_items.items()}
    assert all(i["Balance"] == 0 for i in backend.state("invoice-items") if i["InvoiceId"] == invoice["Id"])
    applications = _query(client, auth, "credit-memos", memo_id, "creditmemoapplications")[
        "creditMemoApplications"
    ]
    assert [(a["invoiceId"], a["amount"]) for a in applications] == [(invoice["Id"], 128)]
    assert [e.category for e in backend.events_since(0) if e.object_id == memo_id] == [2720, None]


def test_an_invoice_with_a_payment_applied_or_not_posted_is_not_reversed(client: TestClient, auth: dict):
    paid = _invoice(client, (50, 0))
    _payment(client, paid, 20)
    draft = client.post("/_sandbox/records/invoices", json={"Status": "Draft"}).json()

    _refused(client.put(f"/v1/invoices/{paid['Id']}/reverse", headers=auth, json={}), "applied to it")
    _refused(client.put(f"/v1/invoices/{draft['Id']}/reverse", headers=auth, json={}), "Posted")

    reversed_once = _invoice(client, (10, 0))
    assert client.put(f"/v1/invoices/{reversed_once['Id']}/reverse", headers=auth, json={}).status_code == 200
    _refused(client.put(f"/v1/invoices/{reversed_once['Id']}/reverse", headers=auth, json={}), "already")


def test_a_reversal_takes_its_dates_and_reason_and_refuses_a_memo_date_before_the_invoice(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    invoice = _invoice(client, (40, 0))
    early = {"memoDate": "2000-01-01"}
    _refused(client.put(f"/v1/invoices/{invoice['Id']}/reverse", headers=auth, json=early), "memoDate")

    body = {
        "memoDate": "2026-01-02",
        "applyEffectiveDate": "2026-01-03",
        "reasonCode": "Correcting invoice error",
        "comment": "wrong plan",
    }
    memo_id = client.put(f"/v1/invoices/{invoice['Id']}/reverse", headers=auth, json=body).json()[
        "creditMemo"
    ]["id"]

    memo = backend.state_record("credit-memos", memo_id)
    assert (memo["MemoDate"], memo["ReasonCode"], memo["Comments"]) == (
        "2026-01-02",
        "Correcting invoice error",
        "wrong plan",
    )
    (application,) = [a for a in backend.state("credit-memo-applications") if a["CreditMemoId"] == memo_id]
    assert application["EffectiveDate"] == "2026-01-03"


def test_writing_off_an_invoice_credits_its_open_balance(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    invoice = _invoice(client, (100, 0))
    _payment(client, invoice, 30)

    response = client.put(
        f"/v1/invoices/{invoice['Id']}/write-off", headers=auth, json={"comment": "bad debt"}
    )

    assert response.status_code == 200, response.text
    memo_id = response.json()["creditMemo"]["id"]
    assert response.json() == {"success": True, "creditMemo": {"id": memo_id}}
    memo = backend.state_record("credit-memos", memo_id)
    assert (memo["TotalAmount"], memo["Balance"], memo["ReasonCode"]) == (70, 0, "Write-off")
    after = backend.state_record("invoices", invoice["Id"])
    assert (after["Balance"], after["PaymentAmount"], after["CreditMemoAmount"]) == (0, 30, 70)
    _refused(client.put(f"/v1/invoices/{invoice['Id']}/write-off", headers=auth, json={}), "no open balance")


def test_reversing_a_credit_memo_creates_a_debit_memo_it_is_applied_to(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    memo = client.post(
        "/_sandbox/records/credit-memos", json={"items": [{"AmountWithoutTax": 25, "TaxAmount": 0}]}
    ).json()

    response = client.put(f"/v1/credit-memos/{memo['MemoNumber']}/reverse", headers=auth, json={})

    assert response.status_code == 200, response.text
    debit_id = response.json()["debitMemo"]["id"]
    assert response.json() == {"success": True, "id": memo["Id"], "debitMemo": {"id": debit_id}}
    debit = _query(client, auth, "debit-memos", debit_id, "debitmemoitems")
    assert (debit["totalAmount"], debit["balance"], debit["creditMemoId"]) == (
        memo["TotalAmount"],
        0,
        memo["Id"],
    )
    assert (debit["reasonCode"], debit["sourceType"]) == ("Credit memo reversal", "CreditMemo")
    assert [i["creditMemoItemId"] for i in debit["debitMemoItems"]] == [
        i["Id"] for i in backend.state("credit-memo-items") if i["CreditMemoId"] == memo["Id"]
    ]
    after = _query(client, auth, "credit-memos", memo["Id"], "creditmemoapplications")
    assert (after["balance"], after["appliedAmount"], after["reversed"]) == (0, memo["TotalAmount"], True)
    assert [(a["debitMemoId"], a["amount"]) for a in after["creditMemoApplications"]] == [
        (debit_id, memo["TotalAmount"])
    ]


def test_a_credit_memo_with_an_applied_amount_is_not_reversed(client: TestClient, auth: dict):
    invoice = _invoice(client, (100, 0))
    memo = client.post(
        "/_sandbox/records/credit-memos",
        json={"InvoiceId": invoice["Id"], "items": [{"AmountWithoutTax": 10, "TaxAmount": 0}]},
    ).json()
    applied = client.put(
        f"/v1/credit-memos/{memo['Id']}/apply",
        headers=auth,
        json={"invoices": [{"invoiceId": invoice["Id"], "amount": 4}]},
    )
    assert applied.status_code == 200, applied.text
    assert (applied.json()["appliedAmount"], applied.json()["unappliedAmount"]) == (4, 6)

    _refused(
        client.put(f"/v1/credit-memos/{memo['Id']}/reverse", headers=auth, json={}), "applied amount is not 0"
    )


def test_unapplying_a_payment_restores_the_invoice_balance_and_applying_it_again_lowers_it(
    client: TestClient, auth: dict, backend: ZuoraBackend, clock: ManualClock
):
    invoice = _invoice(client, (100, 0))
    payment = _payment(client, invoice)
    clock.advance(60)
    body = {"invoices": [{"invoiceId": invoice["Id"], "amount": 100}]}

    unapplied = client.put(f"/v1/payments/{payment['PaymentNumber']}/unapply", headers=auth, json=body)

    assert unapplied.status_code == 200, unapplied.text
    answer = unapplied.json()
    assert (answer["appliedAmount"], answer["unappliedAmount"], answer["success"]) == (0, 100, True)
    assert answer["updatedDate"] > payment["UpdatedDate"].replace("T", " ")[:19]
    assert backend.state_record("invoices", invoice["Id"])["Balance"] == 100
    fetched = _query(client, auth, "payments", payment["Id"], "paymentapplications")
    assert fetched["paymentApplications"] == []
    assert fetched["updatedDate"] > payment["UpdatedDate"]
    reversed_now = client.put(f"/v1/invoices/{invoice['Id']}/reverse", headers=auth, json={})
    assert reversed_now.status_code == 200  # nothing is applied to it any more

    other = _invoice(client, (60, 0))
    apply = {
        "invoices": [{"invoiceNumber": other["InvoiceNumber"], "amount": 60}],
        "effectiveDate": "2026-01-05",
    }
    applied = client.put(f"/v1/payments/{payment['Id']}/apply", headers=auth, json=apply)

    assert applied.status_code == 200, applied.text
    assert (applied.json()["appliedAmount"], applied.json()["unappliedAmount"]) == (60, 40)
    assert backend.state_record("invoices", other["Id"])["Balance"] == 0
    apps = _query(client, auth, "payments", payment["Id"], "paymentapplications")["paymentApplications"]
    assert [(a["invoiceId"], a["applyAmount"], a["effectiveDate"]) for a in apps] == [
        (other["Id"], 60, "2026-01-05")
    ]


def test_a_partial_unapply_lowers_the_application_and_too_much_is_refused(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    invoice = _invoice(client, (80, 0))
    payment = _payment(client, invoice)
    body = {"invoices": [{"invoiceId": invoice["Id"], "amount": 30}]}

    assert client.put(f"/v1/payments/{payment['Id']}/unapply", headers=auth, json=body).status_code == 200
    (application,) = [a for a in backend.state("payment-applications") if a["PaymentId"] == payment["Id"]]
    assert application["ApplyAmount"] == 50
    assert backend.state_record("invoices", invoice["Id"])["Balance"] == 30

    too_much = {"invoices": [{"invoiceId": invoice["Id"], "amount": 51}]}
    _refused(
        client.put(f"/v1/payments/{payment['Id']}/unapply", headers=auth, json=too_much), "exceeds the 50"
    )
    small = _invoice(client, (10, 0))
    over_balance = {"invoices": [{"invoiceId": small["Id"], "amount": 20}]}
    _refused(
        client.put(f"/v1/payments/{payment['Id']}/apply", headers=auth, json=over_balance),
        "exceeds the balance 10.00",
    )
    over_unapplied = {"invoices": [{"invoiceId": invoice["Id"], "amount": 31}]}
    _refused(
        client.put(f"/v1/payments/{payment['Id']}/apply", headers=auth, json=over_unapplied),
        "exceeds the unapplied amount 30.00",
    )
    assert backend.state_record("payments", payment["Id"])["UnappliedAmount"] == 30


def test_a_credit_memo_unapplied_from_an_invoice_gets_its_balance_back(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    invoice = _invoice(client, (100, 0))
    memo = client.post(
        "/_sandbox/records/credit-memos", json={"items": [{"AmountWithoutTax": 40, "TaxAmount": 0}]}
    ).json()
    target = {"invoices": [{"invoiceId": invoice["Id"], "amount": 40}]}
    assert client.put(f"/v1/credit-memos/{memo['Id']}/apply", headers=auth, json=target).status_code == 200
    assert backend.state_record("invoices", invoice["Id"])["Balance"] == 60

    response = client.put(f"/v1/credit-memos/{memo['Id']}/unapply", headers=auth, json=target)

    assert response.status_code == 200, response.text
    assert (response.json()["appliedAmount"], response.json()["unappliedAmount"]) == (0, memo["TotalAmount"])
    assert backend.state_record("invoices", invoice["Id"])["Balance"] == 100
    assert backend.state_record("invoices", invoice["Id"])["CreditMemoAmount"] == 0
    fetched = _query(client, auth, "credit-memos", memo["Id"], "creditmemoapplications")
    assert fetched["creditMemoApplications"] == []


def test_a_payment_is_refunded_up_to_its_unapplied_amount_with_the_reason_given(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    invoice = _invoice(client, (100, 0))
    payment = _payment(client, invoice, 150)  # 100 applied, 50 unapplied
    refund = {
        "type": "External",
        "totalAmount": 50.01,
        "reasonCode": "Payment Rejection",
        "methodType": "Check",
    }

    _refused(
        client.post(f"/v1/payments/{payment['Id']}/refunds", headers=auth, json=refund),
        "exceeds the unapplied amount 50",
    )
    response = client.post(
        f"/v1/payments/{payment['Id']}/refunds", headers=auth, json={**refund, "totalAmount": 50}
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["amount"], answer["paymentId"], answer["reasonCode"], answer["type"]) == (
        50,
        payment["Id"],
        "Payment Rejection",
        "External",
    )
    fetched = _query(client, auth, "refunds", answer["id"], "refundapplications")
    assert (fetched["reasonCode"], fetched["methodType"], fetched["sourceType"]) == (
        "Payment Rejection",
        "Check",
        "Payment",
    )
    assert [(a["paymentId"], a["applyAmount"]) for a in fetched["refundApplications"]] == [
        (payment["Id"], 50)
    ]
    after = backend.state_record("payments", payment["Id"])
    assert (after["UnappliedAmount"], after["RefundAmount"], after["AppliedAmount"]) == (0, 50, 100)
    assert backend.events_since(0)[-1].category == 2410


def test_a_refund_needs_its_type_amount_and_for_an_external_one_its_method(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    payment = backend.state("payments")[0]
    refunds = f"/v1/payments/{payment['Id']}/refunds"
    external = {"type": "External", "methodType": "Check"}

    _refused(client.post(refunds, headers=auth, json={**external, "totalAmount": 0}), "positive")
    _refused(
        client.post(refunds, headers=auth, json={**external, "type": "Cheque", "totalAmount": 1}),
        "type must be",
    )
    _refused(
        client.post(refunds, headers=auth, json={"type": "External", "totalAmount": 1}),
        "methodType is required",
    )
    electronic = {"type": "Electronic", "totalAmount": 1, "methodType": "Check"}
    _refused(client.post(refunds, headers=auth, json=electronic), "external refunds only")
    missing = client.post(
        "/v1/payments/P-99999999/refunds", headers=auth, json={**external, "totalAmount": 1}
    )
    assert missing.status_code == 404


def test_an_electronic_payment_is_refunded_through_its_gateway(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    payment = next(
        p for p in backend.state("payments") if p["Type"] == "Electronic" and p["UnappliedAmount"] >= 1
    )
    external = client.post("/_sandbox/records/payments", json={"Type": "External", "Amount": 5}).json()
    body = {"type": "Electronic", "totalAmount": 1}

    refund = client.post(f"/v1/payments/{payment['Id']}/refunds", headers=auth, json=body)
    _refused(
        client.post(f"/v1/payments/{external['Id']}/refunds", headers=auth, json=body), "electronic payment"
    )

    assert refund.status_code == 200, refund.text
    stored = backend.state_record("refunds", refund.json()["id"])
    assert (stored["Type"], stored["GatewayState"], stored["ReasonCode"]) == (
        "Electronic",
        "Settled",
        "Standard Refund",
    )
