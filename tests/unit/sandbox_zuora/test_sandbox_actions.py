"""POST /v1/action/update and the REST writes of transferredToAccounting (zuora-api.md section 10)."""

from __future__ import annotations

import pytest

from sandbox.zuora import ZuoraBackend

from .conftest import ManualClock, TestClient


def _posted_invoices(backend: ZuoraBackend) -> list[dict]:
    return [i for i in backend.state("invoices") if i["Status"] == "Posted"]


def test_update_marks_invoices_transferred_and_bumps_updated_date(
    client: TestClient, auth: dict, backend: ZuoraBackend, clock: ManualClock
):
    invoices = _posted_invoices(backend)[:3]
    clock.advance(10)

    response = client.post(
        "/v1/action/update",
        headers=auth,
        json={
            "type": "Invoice",
            "objects": [{"Id": i["Id"], "TransferredToAccounting": "Yes"} for i in invoices],
        },
    )

    assert response.status_code == 200
    assert response.json() == [{"Success": True, "Id": i["Id"]} for i in invoices]
    after = [backend.state_record("invoices", i["Id"]) for i in invoices]
    assert all(a["TransferredToAccounting"] == "Yes" for a in after)
    assert all(a["UpdatedDate"] > i["UpdatedDate"] for a, i in zip(after, invoices, strict=True))


def test_update_with_51_objects_is_a_whole_call_error(client: TestClient, auth: dict, backend: ZuoraBackend):
    ids = [i["Id"] for i in backend.state("invoices")[:51]]

    response = client.post(
        "/v1/action/update",
        headers=auth,
        json={"type": "Invoice", "objects": [{"Id": i, "TransferredToAccounting": "Yes"} for i in ids]},
    )

    assert response.status_code == 400
    assert response.json()["FaultCode"] == "MAX_RECORDS_EXCEEDED"
    assert all(i.get("TransferredToAccounting") is None for i in backend.state("invoices"))


def test_update_of_memo_types_is_invalid_type_per_row(client: TestClient, auth: dict, backend: ZuoraBackend):
    memo = backend.state("credit-memos")[0]

    for kind in ("CreditMemo", "DebitMemo"):
        response = client.post(
            "/v1/action/update",
            headers=auth,
            json={"type": kind, "objects": [{"Id": memo["Id"], "TransferredToAccounting": "Yes"}]},
        )

        assert response.status_code == 200
        assert response.json()[0]["Success"] is False
        assert response.json()[0]["Errors"][0]["Code"] == "INVALID_TYPE"


@pytest.mark.vendor_contract_exempt  # an object without Id, on purpose
def test_update_row_errors_keep_request_order(client: TestClient, auth: dict, backend: ZuoraBackend):
    posted = _posted_invoices(backend)[0]
    draft = client.post("/_sandbox/records/invoices", json={"Status": "Draft"}).json()
    objects = [
        {"Id": posted["Id"], "TransferredToAccounting": "No"},  # "No" is not an Actions value
        {"TransferredToAccounting": "Yes"},
        {"Id": "f" * 32, "TransferredToAccounting": "Yes"},
        {"Id": draft["Id"], "TransferredToAccounting": "Yes"},  # only Posted invoices
        {"Id": posted["Id"], "TransferredToAccounting": "Yes", "Misspelt": "ignored"},
    ]

    results = client.post(
        "/v1/action/update", headers=auth, json={"type": "Invoice", "objects": objects}
    ).json()

    assert [r["Success"] for r in results] == [False, False, False, False, True]
    assert [r["Errors"][0]["Code"] for r in results[:4]] == [
        "INVALID_VALUE",
        "MISSING_REQUIRED_VALUE",
        "INVALID_ID",
        "INVALID_VALUE",
    ]


@pytest.mark.vendor_contract_exempt  # a misspelt field, on purpose
def test_reject_unknown_fields_is_a_400(client: TestClient, auth: dict, backend: ZuoraBackend):
    posted = _posted_invoices(backend)[0]

    response = client.post(
        "/v1/action/update?rejectUnknownFields=true",
        headers=auth,
        json={"type": "Invoice", "objects": [{"Id": posted["Id"], "Misspelt": "x"}]},
    )

    assert response.status_code == 400
    assert response.json() == {"message": "Error - unrecognised fields"}


def test_update_payments_and_refunds_by_action(client: TestClient, auth: dict, backend: ZuoraBackend):
    payment, refund = backend.state("payments")[0], backend.state("refunds")[0]

    paid = client.post(
        "/v1/action/update",
        headers=auth,
        json={"type": "Payment", "objects": [{"Id": payment["Id"], "TransferredToAccounting": "Processing"}]},
    ).json()
    refunded = client.post(
        "/v1/action/update",
        headers=auth,
        json={"type": "Refund", "objects": [{"Id": refund["Id"], "TransferredToAccounting": "Error"}]},
    ).json()

    assert paid[0]["Success"] and refunded[0]["Success"]
    assert backend.state_record("payments", payment["Id"])["TransferredToAccounting"] == "Processing"
    assert backend.state_record("refunds", refund["Id"])["TransferredToAccounting"] == "Error"


def test_memo_puts_take_a_top_level_flag(client: TestClient, auth: dict, backend: ZuoraBackend):
    credit, debit = backend.state("credit-memos")[0], backend.state("debit-memos")[0]

    by_number = client.put(
        f"/v1/credit-memos/{credit['MemoNumber']}", headers=auth, json={"transferredToAccounting": "Yes"}
    )
    by_id = client.put(f"/v1/debit-memos/{debit['Id']}", headers=auth, json={"transferredToAccounting": "No"})
    bad = client.put(
        f"/v1/debit-memos/{debit['Id']}", headers=auth, json={"transferredToAccounting": "Maybe"}
    )

    assert by_number.json()["transferredToAccounting"] == "Yes" and by_number.json()["success"] is True
    assert by_id.json()["transferredToAccounting"] == "No"
    assert bad.status_code == 400


@pytest.mark.vendor_contract_exempt  # a top-level transferredToAccounting, on purpose
def test_payment_put_needs_nested_finance_information(client: TestClient, auth: dict, backend: ZuoraBackend):
    payment = backend.state("payments")[0]

    top_level = client.put(
        f"/v1/payments/{payment['Id']}", headers=auth, json={"transferredToAccounting": "Yes"}
    )
    nested = client.put(
        f"/v1/payments/{payment['Id']}",
        headers=auth,
        json={"financeInformation": {"transferredToAccounting": "Yes"}},
    )

    assert top_level.json()["financeInformation"]["transferredToAccounting"] is None
    assert nested.json()["financeInformation"]["transferredToAccounting"] == "Yes"


def test_refund_put_unknown_id_is_404(client: TestClient, auth: dict):
    response = client.put(
        "/v1/refunds/" + "f" * 32,
        headers=auth,
        json={"financeInformation": {"transferredToAccounting": "Yes"}},
    )

    assert response.status_code == 404


def test_bulk_memo_put_answers_each_memo_in_order(client: TestClient, auth: dict, backend: ZuoraBackend):
    credits = [m["Id"] for m in backend.state("credit-memos")[:3]]
    unknown = "f" * 32

    response = client.put(
        "/v1/credit-memos/bulk",
        headers=auth,
        json={
            "memos": [
                {"id": credits[0], "transferredToAccounting": "Yes"},
                {"id": unknown, "transferredToAccounting": "Yes"},
                {"id": credits[1], "transferredToAccounting": "Maybe"},
                {"id": credits[2], "transferredToAccounting": "Yes"},
            ]
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    answers = body["memos"]
    assert [(a["id"], a["success"]) for a in answers] == [
        (credits[0], True),
        (unknown, False),
        (credits[1], False),
        (credits[2], True),
    ]
    assert "does not exist" in answers[1]["reasons"][0]["message"]
    assert "transferredToAccounting must be one of" in answers[2]["reasons"][0]["message"]
    state = {m["Id"]: m.get("TransferredToAccounting") for m in backend.state("credit-memos")}
    assert (state[credits[0]], state[credits[1]], state[credits[2]]) == ("Yes", None, "Yes")


@pytest.mark.vendor_contract_exempt  # 51 memos and a misnamed list, on purpose
def test_bulk_memo_put_takes_at_most_50_and_needs_its_memos_list(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    debits = [m["Id"] for m in backend.state("debit-memos")]
    too_many = [{"id": debits[0], "transferredToAccounting": "Yes"}] * 51

    over = client.put("/v1/debit-memos/bulk", headers=auth, json={"memos": too_many})
    wrong_list = client.put("/v1/debit-memos/bulk", headers=auth, json={"debitMemos": too_many[:1]})

    assert over.status_code == 400 and wrong_list.status_code == 400
    assert all(m.get("TransferredToAccounting") is None for m in backend.state("debit-memos"))


def test_debit_memo_put_without_a_key_updates_due_dates_only(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    # PUT /v1/debit-memos is Zuora's "update due dates of debit memos": it answers success without a
    # per-memo list and never touches transferredToAccounting.
    debit = backend.state("debit-memos")[0]

    response = client.put(
        "/v1/debit-memos", headers=auth, json={"debitMemos": [{"id": debit["Id"], "dueDate": "2025-03-31"}]}
    )

    assert response.status_code == 200
    assert response.json() == {"success": True}
    after = next(m for m in backend.state("debit-memos") if m["Id"] == debit["Id"])
    assert after["DueDate"] == "2025-03-31"
    assert after.get("TransferredToAccounting") == debit.get("TransferredToAccounting")


@pytest.mark.vendor_contract_exempt  # an operation Zuora does not have, on purpose
def test_credit_memo_put_without_a_key_is_not_an_operation(client: TestClient, auth: dict):
    response = client.put("/v1/credit-memos", headers=auth, json={"memos": []})
    assert response.status_code in (404, 405)
