"""AR invoices, payments and GL batches: numbering, status, amounts and 422 validation
(acumatica-api.md sections 3.3, 6.2, 6.4, 6.5)."""

from __future__ import annotations

from .conftest import BASE, wrap

GL_BATCH = {
    "Module": "GL",
    "TransactionDate": "2025-06-30T00:00:00",
    "BranchID": "HQ",
    "LedgerID": "ACTUAL",
    "CurrencyID": "USD",
    "Description": "Zuora revenue recognition Jun-25 run 77",
    "Hold": False,
}


def _lines(*pairs):
    return [
        {"Account": account, "Subaccount": "000000", "DebitAmount": debit, "CreditAmount": credit}
        for account, debit, credit in pairs
    ]


def test_invoice_create_assigns_number_and_is_balanced(api):
    api.customer()

    response = api.invoice("INV-1", amount=99.0)

    record = response.json()
    assert response.status_code == 200
    assert record["ReferenceNbr"] == {"value": "AR000001"}
    assert record["Status"] == {"value": "Balanced"}
    assert record["Amount"] == {"value": 99.0}
    assert record["Balance"] == {"value": 99.0}
    assert record["Type"] == {"value": "Invoice"}
    assert record["PostPeriod"] == {"value": "062025"}
    assert "Details" not in record


def test_invoice_numbers_are_sequential(api):
    api.customer()

    numbers = [api.invoice(f"INV-{n}").json()["ReferenceNbr"]["value"] for n in range(3)]

    assert numbers == ["AR000001", "AR000002", "AR000003"]


def test_invoice_without_hold_starts_on_hold(api):
    api.customer()
    body = {"Customer": "C0001", "Date": "2025-06-10T00:00:00", "CustomerOrder": "INV-9"}

    record = api.put("Invoice", body).json()

    assert record["Status"] == {"value": "On Hold"}
    assert record["Hold"] == {"value": True}


def test_invoice_found_by_customer_order_filter(api):
    api.customer()
    api.invoice("INV-1")
    api.invoice("INV-2")

    found = api.get(
        "Invoice",
        **{
            "$filter": "CustomerOrder eq 'INV-2' and Type eq 'Invoice'",
            "$select": "ReferenceNbr,CustomerOrder",
        },
    ).json()

    assert [(row["ReferenceNbr"]["value"], row["CustomerOrder"]["value"]) for row in found] == [
        ("AR000002", "INV-2")
    ]


def test_invoice_customer_order_is_not_unique(api):
    api.customer()
    api.invoice("INV-1")
    api.invoice("INV-1")

    found = api.get("Invoice", **{"$filter": "CustomerOrder eq 'INV-1'"}).json()

    assert len(found) == 2


def test_invoice_amount_is_the_sum_of_line_amounts(api):
    api.customer()
    body = {
        "Customer": "C0001",
        "Date": "2025-06-10T00:00:00",
        "Hold": False,
        "Details": [
            {"Qty": 2, "UnitPrice": 10.5},
            {"ExtendedPrice": 30},
            {"Qty": 1, "UnitPrice": 50, "DiscountAmount": 5},
        ],
    }

    record = api.put("Invoice", body, **{"$expand": "Details"}).json()

    assert record["Amount"] == {"value": 96.0}
    assert [line["Amount"]["value"] for line in record["Details"]] == [21.0, 30.0, 45.0]
    assert [line["LineNbr"]["value"] for line in record["Details"]] == [1, 2, 3]
    assert record["Details"][0]["Account"] == {"value": "40000"}


def test_invoice_lines_without_id_are_appended_and_delete_removes(api):
    api.customer()
    created = api.invoice("INV-1", amount=10.0).json()
    key = {"Type": "Invoice", "ReferenceNbr": created["ReferenceNbr"]["value"]}

    appended = api.put("Invoice", {**key, "Details": [{"UnitPrice": 5}]}, **{"$expand": "Details"}).json()
    first_line = appended["Details"][0]["id"]
    removed = api.client.put(
        f"{BASE}/Invoice",
        params={"$expand": "Details"},
        json={**wrap(key), "Details": [{"id": first_line, "delete": True}]},
    ).json()

    assert appended["id"] == created["id"]
    assert appended["Amount"] == {"value": 15.0}
    assert removed["Amount"] == {"value": 5.0}
    assert len(removed["Details"]) == 1


def test_invoice_type_code_is_accepted_and_read_back_as_label(api):
    api.customer()

    record = api.invoice("DM-1", Type="DRM").json()

    assert record["Type"] == {"value": "Debit Memo"}
    assert api.get(f"Invoice/Debit Memo/{record['ReferenceNbr']['value']}").status_code == 200


def test_invoice_unknown_customer_is_422_record_with_field_error(api):
    response = api.invoice("INV-1", customer="NOBODY")

    assert response.status_code == 422
    body = response.json()
    assert (
        body["error"] == "Inserting  'AR Invoice' record raised at least one error. Please review the errors."
    )
    assert body["Customer"] == {
        "value": "NOBODY",
        "error": "Customer 'NOBODY' cannot be found in the system.",
    }
    assert body["ReferenceNbr"] == {"value": "<NEW>"}
    assert list(body)[:3] == ["id", "rowNumber", "error"]
    assert api.backend.state("Invoice") == []


def test_invoice_unknown_account_is_422_with_the_error_on_the_line(api):
    api.customer()
    body = {
        "Customer": "C0001",
        "Date": "2025-06-10T00:00:00",
        "Hold": False,
        "Details": [{"UnitPrice": 5, "Account": "99999"}],
    }

    response = api.put("Invoice", body)

    assert response.status_code == 422
    line = response.json()["Details"][0]
    assert line["Account"] == {"value": "99999", "error": "Account '99999' cannot be found in the system."}


def test_invoice_unknown_subaccount_is_422(api):
    api.customer()
    body = {
        "Customer": "C0001",
        "Date": "2025-06-10T00:00:00",
        "Details": [{"UnitPrice": 5, "Subaccount": "XX"}],
    }

    response = api.put("Invoice", body)

    assert response.status_code == 422
    assert (
        response.json()["Details"][0]["Subaccount"]["error"]
        == "Subaccount 'XX' cannot be found in the system."
    )


def test_invoice_unknown_branch_is_422(api):
    api.customer()
    body = {
        "Customer": "C0001",
        "Date": "2025-06-10T00:00:00",
        "Details": [{"UnitPrice": 5, "Branch": "MARS"}],
    }

    response = api.put("Invoice", body)

    assert response.status_code == 422
    assert response.json()["Details"][0]["Branch"]["error"] == "Branch 'MARS' cannot be found in the system."


def test_invoice_in_closed_period_is_422(api):
    api.customer()
    api.client.post("/_sandbox/close-period", json={"period": "062025"})

    response = api.invoice("INV-1", PostPeriod="062025")

    assert response.status_code == 422
    assert response.json()["PostPeriod"] == {
        "value": "062025",
        "error": "The 06-2025 financial period is closed.",
    }


def test_invoice_date_in_closed_period_puts_the_error_on_date(api):
    api.customer()
    api.client.post("/_sandbox/close-period", json={"period": "06-2025"})

    response = api.invoice("INV-1")

    assert response.status_code == 422
    assert response.json()["Date"]["error"] == "The 06-2025 financial period is closed."


def test_invoice_in_inactive_period_is_422(api):
    api.customer()
    api.client.post("/_sandbox/period-status", json={"period": "062025", "status": "Inactive"})

    response = api.invoice("INV-1")

    assert response.json()["Date"]["error"] == "The 06-2025 financial period is inactive."


def test_invoice_date_outside_the_calendar_is_422(api):
    api.customer()

    response = api.invoice("INV-1", Date="2031-10-01T00:00:00")

    assert response.status_code == 422
    assert response.json()["Date"]["error"] == (
        "The financial period that corresponds to the 10/1/2031 date does not exist "
        "in the master financial calendar."
    )


def test_invoice_yyyymm_post_period_is_rejected(api):
    api.customer()

    response = api.invoice("INV-1", PostPeriod="202506")

    assert response.status_code == 422
    assert "not a valid financial period" in response.json()["PostPeriod"]["error"]


def test_invoice_invalid_type_label_is_422(api):
    api.customer()

    response = api.invoice("INV-1", Type="IN")

    assert response.status_code == 422
    assert response.json()["Type"] == {
        "value": "IN",
        "error": "The value 'IN' is not in the list of allowed values for Type.",
    }


def test_invoice_customer_order_longer_than_40_is_422(api):
    api.customer()

    response = api.invoice("X" * 41)

    assert response.status_code == 422
    assert response.json()["CustomerOrder"]["error"] == "The length of the value exceeds 40 characters."


def test_invoice_line_description_is_transaction_description(api):
    api.customer()

    record = api.invoice("INV-1", Description="Zuora INV-1").json()
    expanded = api.get(f"Invoice/Invoice/{record['ReferenceNbr']['value']}", **{"$expand": "Details"}).json()

    assert expanded["Description"] == {"value": "Zuora INV-1"}
    assert expanded["Details"][0]["TransactionDescription"] == {"value": "Plan"}


def test_payment_unknown_customer_is_422(api):
    response = api.put(
        "Payment", {"Type": "Payment", "CustomerID": "NOBODY", "PaymentAmount": 5, "Hold": False}
    )

    assert response.status_code == 422
    assert response.json()["CustomerID"]["error"] == "Customer 'NOBODY' cannot be found in the system."


def test_payment_defaults_method_and_cash_account(api):
    api.customer()

    record = api.put("Payment", {"CustomerID": "C0001", "PaymentAmount": 5, "Hold": False}).json()

    assert record["Type"] == {"value": "Payment"}
    assert record["ReferenceNbr"] == {"value": "000001"}
    assert record["PaymentMethod"] == {"value": "CHECK"}
    assert record["CashAccount"] == {"value": "10200"}
    assert record["Status"] == {"value": "Balanced"}
    assert record["AvailableBalance"] == {}


def test_payment_non_cash_account_is_422(api):
    api.customer()

    response = api.put("Payment", {"CustomerID": "C0001", "PaymentAmount": 5, "CashAccount": "40000"})

    assert response.status_code == 422
    assert response.json()["CashAccount"]["error"] == "Cash Account '40000' cannot be found in the system."


def test_payment_application_to_unreleased_invoice_is_422(api):
    api.customer()
    api.invoice("INV-1")
    body = {
        "CustomerID": "C0001",
        "PaymentAmount": 100,
        "DocumentsToApply": [{"DocType": "Invoice", "ReferenceNbr": "AR000001", "AmountPaid": 100}],
    }

    response = api.put("Payment", body)

    assert response.status_code == 422
    assert response.json()["DocumentsToApply"][0]["ReferenceNbr"]["error"] == (
        "Reference Nbr. 'AR000001' cannot be found in the system."
    )


def test_payment_ref_is_filterable_and_not_unique(api):
    api.customer()
    api.put("Payment", {"CustomerID": "C0001", "PaymentAmount": 5, "PaymentRef": "P-1"})
    api.put("Payment", {"CustomerID": "C0001", "PaymentAmount": 6, "PaymentRef": "P-1"})

    found = api.get("Payment", **{"$filter": "PaymentRef eq 'P-1' and CustomerID eq 'C0001'"}).json()

    assert [row["PaymentAmount"]["value"] for row in found] == [5.0, 6.0]


def test_journal_balanced_batch_is_created_balanced(api):
    body = {**GL_BATCH, "Details": _lines(("23000", 1000, 0), ("40000", 0, 1000))}

    response = api.put("JournalTransaction", body, **{"$expand": "Details"})

    record = response.json()
    assert response.status_code == 200
    assert record["BatchNbr"] == {"value": "000001"}
    assert record["Module"] == {"value": "GL"}
    assert record["Status"] == {"value": "Balanced"}
    assert record["PostPeriod"] == {"value": "062025"}
    assert record["Details"][0]["Description"] == {"value": "Deferred Revenue"}
    assert api.get("JournalTransaction/GL/000001").status_code == 200


def test_journal_unbalanced_batch_not_on_hold_is_422(api):
    body = {**GL_BATCH, "Details": _lines(("23000", 1000, 0), ("40000", 0, 999.99))}

    response = api.put("JournalTransaction", body)

    assert response.status_code == 422
    assert response.json()["error"] == "Batch is out of balance, please review."
    assert response.json()["BatchNbr"] == {"value": "<NEW>"}
    assert api.backend.state("JournalTransaction") == []


def test_journal_unbalanced_batch_on_hold_is_saved(api):
    body = {**GL_BATCH, "Hold": True, "Details": _lines(("23000", 1000, 0))}

    response = api.put("JournalTransaction", body)

    assert response.status_code == 200
    assert response.json()["Status"] == {"value": "On Hold"}


def test_journal_unknown_account_is_422_on_the_line(api):
    body = {**GL_BATCH, "Details": _lines(("23000", 10, 0), ("49999", 0, 10))}

    response = api.put("JournalTransaction", body)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "Inserting  'Batch' record raised at least one error. Please review the errors."
    assert body["Details"][1]["Account"]["error"] == "Account '49999' cannot be found in the system."


def test_journal_unknown_branch_is_422(api):
    body = {**GL_BATCH, "BranchID": "MARS", "Details": _lines(("23000", 10, 0), ("40000", 0, 10))}

    response = api.put("JournalTransaction", body)

    assert response.status_code == 422
    assert response.json()["BranchID"]["error"] == "Branch 'MARS' cannot be found in the system."


def test_journal_closed_period_is_422(api):
    api.client.post("/_sandbox/close-period", json={"period": "062025"})
    body = {**GL_BATCH, "PostPeriod": "062025", "Details": _lines(("23000", 10, 0), ("40000", 0, 10))}

    response = api.put("JournalTransaction", body)

    assert response.status_code == 422
    assert response.json()["PostPeriod"]["error"] == "The 06-2025 financial period is closed."


def test_journal_found_by_description_filter(api):
    api.put("JournalTransaction", {**GL_BATCH, "Details": _lines(("23000", 1, 0), ("40000", 0, 1))})

    found = api.get(
        "JournalTransaction",
        **{"$filter": "startswith(Description,'Zuora revenue recognition Jun-25 run 77') and Module eq 'GL'"},
    ).json()

    assert [row["BatchNbr"]["value"] for row in found] == ["000001"]


def test_explicit_post_period_survives_an_update_that_does_not_send_it(api):
    api.customer()
    created = api.invoice("INV-1", PostPeriod="072025").json()

    updated = api.put("Invoice", {"id": created["id"], "Description": "later"}).json()

    assert updated["PostPeriod"] == {"value": "072025"}


def test_new_date_on_update_rederives_the_post_period(api):
    api.customer()
    created = api.invoice("INV-1").json()

    updated = api.put("Invoice", {"id": created["id"], "Date": "2025-08-05T00:00:00"}).json()

    assert updated["PostPeriod"] == {"value": "082025"}


def test_business_date_header_sets_the_default_document_date(api):
    api.customer()

    record = api.client.put(
        f"{BASE}/Invoice",
        json=wrap({"Customer": "C0001", "Hold": False}),
        headers={"PX-CbApiBusinessDate": "2025/03/15"},
    ).json()

    assert record["Date"]["value"].startswith("2025-03-15T00:00:00")
    assert record["PostPeriod"] == {"value": "032025"}
