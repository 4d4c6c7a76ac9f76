"""Release actions, long-running operation polling and document lifecycles
(acumatica-api.md sections 4.4, 6.2, 6.4, 6.5)."""

from __future__ import annotations

from .conftest import BASE

INVOICE_KEY = {"Type": {"value": "Invoice"}, "ReferenceNbr": {"value": "AR000001"}}


def _open_invoice(api, order="INV-1", amount=100.0):
    record = api.invoice(order, amount=amount).json()
    done = api.release("Invoice", "ReleaseInvoice", {"id": record["id"]})
    assert done.status_code == 204
    return record["ReferenceNbr"]["value"]


def test_release_invoice_answers_202_with_relative_location_then_204(api):
    api.customer()
    api.invoice("INV-1")

    started = api.client.post(f"{BASE}/Invoice/ReleaseInvoice", json={"entity": INVOICE_KEY})
    location = started.headers["location"]
    polls = [api.client.get(location).status_code for _ in range(3)]

    assert started.status_code == 202
    assert location.startswith(f"{BASE}/Invoice/ReleaseInvoice/status/")
    assert polls == [202, 204, 204]
    assert api.get("Invoice/Invoice/AR000001").json()["Status"] == {"value": "Open"}


def test_release_takes_effect_only_when_the_operation_completes(api):
    api.customer()
    api.invoice("INV-1")

    api.client.post(f"{BASE}/Invoice/ReleaseInvoice", json={"entity": INVOICE_KEY})

    assert api.get("Invoice/Invoice/AR000001").json()["Status"] == {"value": "Balanced"}


def test_action_polls_knob_sets_the_number_of_202s(api):
    api.customer()
    api.invoice("INV-1")
    api.client.post("/_sandbox/config", json={"action_polls": 3})

    location = api.client.post(f"{BASE}/Invoice/ReleaseInvoice", json={"entity": INVOICE_KEY}).headers[
        "location"
    ]
    polls = [api.client.get(location).status_code for _ in range(4)]

    assert polls == [202, 202, 202, 204]


def test_action_polls_zero_answers_204_at_once_with_the_processed_records_location(api):
    api.customer()
    created = api.invoice("INV-1").json()
    api.backend.config.update({"action_polls": 0})

    done = api.client.post(f"{BASE}/Invoice/ReleaseInvoice", json={"entity": INVOICE_KEY})

    # The definition's 204 Location is where to GET the processed record; the vendor's client
    # reads it and, finding no action in it, does not poll.
    assert done.status_code == 204
    assert done.headers["location"] == f"{BASE}/Invoice/{created['id']}"
    record = api.client.get(done.headers["location"]).json()
    assert record["ReferenceNbr"] == {"value": "AR000001"}
    assert record["Status"] == {"value": "Open"}


def test_action_completes_after_action_seconds_without_polling(api, clock):
    api.customer()
    api.invoice("INV-1")
    api.backend.config.update({"action_seconds": 2.0})
    api.client.post(f"{BASE}/Invoice/ReleaseInvoice", json={"entity": INVOICE_KEY})
    clock.now += 3

    assert api.get("Invoice/Invoice/AR000001").json()["Status"] == {"value": "Open"}


def test_release_of_document_on_hold_fails_on_the_status_poll(api):
    api.customer()
    api.invoice("INV-1", Hold=True)

    failed = api.release("Invoice", "ReleaseInvoice", INVOICE_KEY)

    assert failed.status_code == 500
    assert failed.json()["exceptionMessage"] == "Document is On Hold and cannot be released."
    assert api.get("Invoice/Invoice/AR000001").json()["Status"] == {"value": "On Hold"}


def test_release_of_released_document_fails(api):
    api.customer()
    _open_invoice(api)

    failed = api.release("Invoice", "ReleaseInvoice", INVOICE_KEY)

    assert failed.json()["exceptionMessage"] == "Document Status is invalid for processing."


def test_release_of_missing_document_is_500_no_entity(api):
    response = api.client.post(f"{BASE}/Invoice/ReleaseInvoice", json={"entity": INVOICE_KEY})

    assert response.status_code == 500
    assert response.json()["exceptionMessage"] == "No entity satisfies the condition."


def test_released_invoice_ignores_field_changes(api):
    api.customer()
    _open_invoice(api)

    updated = api.put("Invoice", {"Type": "Invoice", "ReferenceNbr": "AR000001", "Description": "changed"})

    assert updated.status_code == 200
    assert updated.json()["Description"] == {}


def test_payment_applied_in_full_closes_the_invoice(api):
    api.customer()
    invoice = _open_invoice(api, amount=99.0)
    payment = api.put(
        "Payment",
        {
            "Type": "Payment",
            "CustomerID": "C0001",
            "PaymentAmount": 99.0,
            "PaymentRef": "P-00004567",
            "Hold": False,
            "DocumentsToApply": [{"DocType": "Invoice", "ReferenceNbr": invoice, "AmountPaid": 99.0}],
        },
    ).json()

    done = api.release(
        "Payment", "ReleasePayment", {"Type": {"value": "Payment"}, "ReferenceNbr": payment["ReferenceNbr"]}
    )

    assert done.status_code == 204
    invoice_after = api.get(f"Invoice/Invoice/{invoice}", **{"$expand": "ApplicationsDefault"}).json()
    assert invoice_after["Status"] == {"value": "Closed"}
    assert invoice_after["Balance"] == {"value": 0.0}
    assert invoice_after["ApplicationsDefault"][0]["ReferenceNbr"] == {"value": "000001"}
    payment_after = api.get(
        "Payment/Payment/000001", **{"$expand": "DocumentsToApply,ApplicationHistory"}
    ).json()
    assert payment_after["Status"] == {"value": "Closed"}
    assert payment_after["DocumentsToApply"] == []
    assert payment_after["ApplicationHistory"][0]["DisplayRefNbr"] == {"value": invoice}


def test_partial_payment_leaves_invoice_open_with_balance(api):
    api.customer()
    invoice = _open_invoice(api, amount=100.0)
    payment = api.put(
        "Payment",
        {
            "CustomerID": "C0001",
            "PaymentAmount": 60.0,
            "Hold": False,
            "DocumentsToApply": [{"ReferenceNbr": invoice, "AmountPaid": 40.0}],
        },
    ).json()

    api.release("Payment", "ReleasePayment", {"id": payment["id"]})

    assert api.get(f"Invoice/Invoice/{invoice}").json()["Balance"] == {"value": 60.0}
    assert api.get(f"Invoice/Invoice/{invoice}").json()["Status"] == {"value": "Open"}
    assert api.get("Payment/Payment/000001").json()["Status"] == {"value": "Open"}


def test_application_above_the_invoice_balance_is_422(api):
    api.customer()
    invoice = _open_invoice(api, amount=50.0)

    response = api.put(
        "Payment",
        {
            "CustomerID": "C0001",
            "PaymentAmount": 80.0,
            "DocumentsToApply": [{"ReferenceNbr": invoice, "AmountPaid": 80.0}],
        },
    )

    assert response.status_code == 422
    assert response.json()["DocumentsToApply"][0]["AmountPaid"]["error"] == (
        "The amount paid cannot exceed the balance of the document."
    )


def test_applications_above_the_payment_amount_are_422(api):
    api.customer()
    first = _open_invoice(api, "INV-1", amount=50.0)
    second = _open_invoice(api, "INV-2", amount=50.0)

    response = api.put(
        "Payment",
        {
            "CustomerID": "C0001",
            "PaymentAmount": 60.0,
            "DocumentsToApply": [
                {"ReferenceNbr": first, "AmountPaid": 50.0},
                {"ReferenceNbr": second, "AmountPaid": 50.0},
            ],
        },
    )

    assert response.status_code == 422
    assert (
        response.json()["PaymentAmount"]["error"]
        == "The amount applied to documents exceeds the payment amount."
    )


def test_credit_memo_appears_in_the_payment_list(api):
    api.customer()
    api.invoice("CM-1", Type="Credit Memo", amount=25.0)

    payments = api.get("Payment", **{"$select": "Type,ReferenceNbr,PaymentAmount"}).json()
    only_payments = api.get("Payment", **{"$filter": "Type eq 'Payment'"}).json()

    assert [(row["Type"]["value"], row["PaymentAmount"]["value"]) for row in payments] == [
        ("Credit Memo", 25.0)
    ]
    assert only_payments == []


def test_released_credit_memo_applied_through_payment_closes_the_invoice(api):
    api.customer()
    invoice = _open_invoice(api, "INV-1", amount=25.0)
    memo_record = api.invoice("CM-1", Type="Credit Memo", amount=25.0).json()
    api.release("Invoice", "ReleaseInvoice", {"id": memo_record["id"]})
    memo = memo_record["ReferenceNbr"]["value"]

    api.put(
        "Payment",
        {
            "Type": "Credit Memo",
            "ReferenceNbr": memo,
            "DocumentsToApply": [{"ReferenceNbr": invoice, "AmountPaid": 25.0}],
        },
    )
    done = api.release(
        "Payment", "ReleasePayment", {"Type": {"value": "Credit Memo"}, "ReferenceNbr": {"value": memo}}
    )

    assert done.status_code == 204
    assert api.get(f"Invoice/Invoice/{invoice}").json()["Status"] == {"value": "Closed"}
    assert api.get(f"Invoice/Credit Memo/{memo}").json()["Status"] == {"value": "Closed"}


def test_creating_a_credit_memo_on_the_payment_form_is_422(api):
    api.customer()

    response = api.put("Payment", {"Type": "Credit Memo", "CustomerID": "C0001", "PaymentAmount": 5})

    assert response.status_code == 422
    assert "cannot be created" in response.json()["Type"]["error"]


def test_release_journal_transaction_posts_the_batch(api):
    batch = api.put(
        "JournalTransaction",
        {
            "TransactionDate": "2025-06-30T00:00:00",
            "Description": "run 77",
            "Hold": False,
            "Details": [
                {"Account": "23000", "DebitAmount": 10},
                {"Account": "40000", "CreditAmount": 10},
            ],
        },
    ).json()

    done = api.release(
        "JournalTransaction",
        "ReleaseJournalTransaction",
        {"Module": {"value": "GL"}, "BatchNbr": batch["BatchNbr"]},
    )

    assert done.status_code == 204
    assert api.get("JournalTransaction/GL/000001").json()["Status"] == {"value": "Posted"}


def test_release_journal_transaction_without_auto_post_leaves_it_unposted(api):
    api.backend.config.update({"auto_post": False})
    batch = api.put(
        "JournalTransaction",
        {
            "TransactionDate": "2025-06-30T00:00:00",
            "Hold": False,
            "Details": [{"Account": "23000", "DebitAmount": 0}],
        },
    ).json()

    api.release("JournalTransaction", "ReleaseJournalTransaction", {"id": batch["id"]})

    assert api.get("JournalTransaction/GL/000001").json()["Status"] == {"value": "Unposted"}


def test_release_journal_transaction_in_a_period_closed_since_entry_fails(api):
    batch = api.put(
        "JournalTransaction",
        {
            "TransactionDate": "2025-06-30T00:00:00",
            "Hold": False,
            "Details": [{"Account": "23000", "DebitAmount": 0}],
        },
    ).json()
    api.client.post("/_sandbox/close-period", json={"period": "062025"})

    failed = api.release("JournalTransaction", "ReleaseJournalTransaction", {"id": batch["id"]})

    assert failed.status_code == 500
    assert failed.json()["exceptionMessage"] == "The 06-2025 financial period is closed."


def test_status_of_unknown_operation_is_500(api):
    response = api.client.get(f"{BASE}/Invoice/ReleaseInvoice/status/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 500


def test_refund_applied_to_an_open_payment_closes_both(api):
    api.customer()
    payment = api.put("Payment", {"CustomerID": "C0001", "PaymentAmount": 30.0, "Hold": False}).json()
    api.release("Payment", "ReleasePayment", {"id": payment["id"]})
    refund = api.put(
        "Payment",
        {
            "Type": "Refund",
            "CustomerID": "C0001",
            "PaymentAmount": 30.0,
            "Hold": False,
            "DocumentsToApply": [{"DocType": "Payment", "ReferenceNbr": payment["ReferenceNbr"]["value"]}],
        },
        **{"$expand": "DocumentsToApply"},
    ).json()

    done = api.release("Payment", "ReleasePayment", {"id": refund["id"]})

    assert refund["DocumentsToApply"][0]["AmountPaid"] == {"value": 30.0}
    assert done.status_code == 204
    assert api.get(f"Payment/Payment/{payment['ReferenceNbr']['value']}").json()["Status"] == {
        "value": "Closed"
    }
    assert api.get(f"Payment/Refund/{refund['ReferenceNbr']['value']}").json()["Status"] == {
        "value": "Closed"
    }
