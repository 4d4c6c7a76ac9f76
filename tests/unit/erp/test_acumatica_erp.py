"""AcumaticaErp: the neutral documents as Acumatica entities, exactly as acumatica-api.md section 6
names them, and the natural-key lookups of section 7."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.erp.acumatica import AcumaticaErp, CurrencyCache
from shared.erp.acumatica_entities import (
    KEYS_PER_READ,
    customer_record,
    document_record,
    find_query,
    journal_record,
    key_groups,
    payment_record,
)
from shared.erp.acumatica_wire import dumps, wrap
from shared.erp.base import (
    Application,
    ArDocument,
    ArLine,
    Customer,
    ErpRef,
    ErpTarget,
    Journal,
    JournalLine,
    Payment,
    RenderedRequest,
    Totals,
)
from shared.erp.errors import DuplicateDocuments, OutcomeUnknown
from shared.errors import NotFound, Rejected, Transient

from .conftest import BASE, body_of, filter_of, http_error, json_response

D = Decimal


def invoice_doc(**overrides) -> ArDocument:
    values: dict[str, Any] = {
        "kind": "invoice",
        "natural_key": "INV00001234",
        "customer_id": "ZA00012345",
        "date": dt.date(2025, 6, 1),
        "due_date": dt.date(2025, 7, 1),
        "post_period": "2025-06",
        "currency": "USD",
        "description": "Zuora INV00001234",
        "lines": (
            ArLine(
                description="Pro plan Jun-25",
                amount=D("99.00"),
                quantity=D(1),
                unit_price=D("99.00"),
                account="40000",
                subaccount="000000",
                branch="HQ",
            ),
        ),
    }
    values.update(overrides)
    return ArDocument(**values)


def payment(**overrides) -> Payment:
    values: dict[str, Any] = {
        "kind": "payment",
        "natural_key": "P-00004567",
        "customer_id": "ZA00012345",
        "date": dt.date(2025, 6, 5),
        "amount": D("99.00"),
        "currency": "USD",
        "payment_method": "CHECK",
        "cash_account": "10200",
        "description": "Zuora payment P-00004567",
    }
    values.update(overrides)
    return Payment(**values)


def journal(**overrides) -> Journal:
    values: dict[str, Any] = {
        "natural_key": "JE-00000012",
        "date": dt.date(2025, 6, 30),
        "post_period": "2025-06",
        "currency": "USD",
        "ledger": "ACTUAL",
        "branch": "HQ",
        "description": "JE-00000012 Invoice Item Jun'25",
        "lines": (
            JournalLine(
                account="11000", subaccount="000000", debit=D("1000.00"), description="Accounts Receivable"
            ),
            JournalLine(
                account="40000", subaccount="000000", credit=D("1000.00"), description="Sales Revenue"
            ),
        ),
    }
    values.update(overrides)
    return Journal(**values)


# -- payloads, compared with the API notes ------------------------------------------------------------


def test_customer_payload_matches_section_6_1():
    customer = Customer(
        customer_id="ZA00012345",
        name="Acme Corp",
        currency="USD",
        zuora_account_id="2c92c0f8",
        zuora_account_number="A00000001",
        email="ap@acme.com",
        customer_class="DEFAULT",
        country="US",
    )
    assert wrap(customer_record(customer)) == {
        "CustomerID": {"value": "ZA00012345"},
        "CustomerName": {"value": "Acme Corp"},
        "CustomerClass": {"value": "DEFAULT"},
        "CurrencyID": {"value": "USD"},
        "AccountRef": {"value": "2c92c0f8"},
        "MainContact": {"Email": {"value": "ap@acme.com"}, "Address": {"Country": {"value": "US"}}},
    }


def test_invoice_payload_uses_customer_branch_and_transaction_description():
    assert dumps(wrap(document_record(invoice_doc()))) == (
        '{"Type":{"value":"Invoice"},"Customer":{"value":"ZA00012345"},"Date":{"value":"2025-06-01T00:00:00"},'
        '"DueDate":{"value":"2025-07-01T00:00:00"},"PostPeriod":{"value":"062025"},"CustomerOrder":{"value":"INV00001234"},'
        '"Description":{"value":"Zuora INV00001234"},"Hold":{"value":false},'
        '"Details":[{"Branch":{"value":"HQ"},"TransactionDescription":{"value":"Pro plan Jun-25"},'
        '"Qty":{"value":1},"UnitPrice":{"value":99.00},"ExtendedPrice":{"value":99.00},"Amount":{"value":99.00},'
        '"Account":{"value":"40000"},"Subaccount":{"value":"000000"}}]}'
    )
    sent = wrap(document_record(invoice_doc()))
    assert "CustomerID" not in sent and "CurrencyID" not in sent  # Invoice has neither (pitfall 1)
    assert "BranchID" not in sent["Details"][0]


@pytest.mark.parametrize(("kind", "label"), [("debit_memo", "Debit Memo"), ("credit_memo", "Credit Memo")])
def test_memo_payload_type_labels(kind, label):
    doc = invoice_doc(kind=kind, natural_key="CM00000001", due_date=None)
    record = document_record(doc)
    assert record["Type"] == label
    assert record["CustomerOrder"] == "CM00000001"
    assert "DueDate" not in wrap(record)


def test_credit_memo_payload_carries_its_applications():
    doc = invoice_doc(
        kind="credit_memo",
        natural_key="CM00000001",
        due_date=None,
        applies_to=(Application(natural_key="INV00001234", amount=D("40.00")),),
    )
    record = wrap(document_record(doc, [("Invoice", "AR006789", D("40.00"))]))
    assert record["ApplicationsCreditMemo"] == [
        {
            "DocType": {"value": "Invoice"},
            "ReferenceNbr": {"value": "AR006789"},
            "AmountPaid": {"value": D("40.00")},
        }
    ]


def test_invoice_line_keeps_quantity_only_when_it_multiplies_to_the_amount():
    prorated = ArLine(
        description="Seats (prorated)",
        amount=D("45.16"),
        quantity=D(3),
        unit_price=D("25.00"),
        account="40000",
    )
    exact = ArLine(
        description="Seats", amount=D("75.00"), quantity=D(3), unit_price=D("25.00"), account="40000"
    )
    details = document_record(invoice_doc(lines=(prorated, exact)))["Details"]
    assert [(d["Qty"], d["UnitPrice"], d["Amount"]) for d in details] == [
        (D(1), D("45.16"), D("45.16")),
        (D(3), D("25.00"), D("75.00")),
    ]


def test_payment_payload_matches_section_6_4():
    record = payment_record(payment(), [("Invoice", "AR006789", D("99.00"))])
    assert dumps(wrap(record)) == (
        '{"Type":{"value":"Payment"},"CustomerID":{"value":"ZA00012345"},"PaymentMethod":{"value":"CHECK"},'
        '"CashAccount":{"value":"10200"},"PaymentAmount":{"value":99.00},"ApplicationDate":{"value":"2025-06-05T00:00:00"},'
        '"PaymentRef":{"value":"P-00004567"},"Description":{"value":"Zuora payment P-00004567"},'
        '"Hold":{"value":false},"DocumentsToApply":[{"DocType":{"value":"Invoice"},'
        '"ReferenceNbr":{"value":"AR006789"},"AmountPaid":{"value":99.00}}]}'
    )
    assert "Customer" not in record  # Payment uses CustomerID (pitfall 1)


def test_refund_payload_type():
    assert payment_record(payment(kind="refund", natural_key="R-00000001"))["Type"] == "Refund"


def test_journal_payload_matches_section_6_5():
    assert dumps(wrap(journal_record(journal()))) == (
        '{"Module":{"value":"GL"},"TransactionDate":{"value":"2025-06-30T00:00:00"},"PostPeriod":{"value":"062025"},'
        '"BranchID":{"value":"HQ"},"LedgerID":{"value":"ACTUAL"},"CurrencyID":{"value":"USD"},'
        '"Description":{"value":"JE-00000012 Invoice Item Jun\'25"},"Hold":{"value":false},"Details":['
        '{"BranchID":{"value":"HQ"},"Account":{"value":"11000"},"Subaccount":{"value":"000000"},'
        '"DebitAmount":{"value":1000.00},"TransactionDescription":{"value":"Accounts Receivable"},'
        '"ReferenceNbr":{"value":"JE-00000012"}},'
        '{"BranchID":{"value":"HQ"},"Account":{"value":"40000"},"Subaccount":{"value":"000000"},'
        '"CreditAmount":{"value":1000.00},"TransactionDescription":{"value":"Sales Revenue"},'
        '"ReferenceNbr":{"value":"JE-00000012"}}]}'
    )


def test_journal_description_always_starts_with_the_je_number():
    assert journal_record(journal(description="revenue run"))["Description"] == "JE-00000012 revenue run"


@pytest.mark.parametrize(
    ("kind", "customer", "expected"),
    [
        ("invoice", None, ("Invoice", "CustomerOrder eq 'INV0001' and Type eq 'Invoice'")),
        (
            "credit_memo",
            "ZA1",
            ("Invoice", "CustomerOrder eq 'INV0001' and Type eq 'Credit Memo' and Customer eq 'ZA1'"),
        ),
        (
            "payment",
            "ZA1",
            ("Payment", "PaymentRef eq 'INV0001' and Type eq 'Payment' and CustomerID eq 'ZA1'"),
        ),
        ("refund", None, ("Payment", "PaymentRef eq 'INV0001' and Type eq 'Refund'")),
        ("journal", None, ("JournalTransaction", "startswith(Description,'INV0001') and Module eq 'GL'")),
    ],
)
def test_find_query_per_kind(kind, customer, expected):
    entity, where, _ = find_query(kind, "INV0001", customer)
    assert (entity, where) == expected


# -- the adapter over the fake ---------------------------------------------------------------------------


@pytest.fixture
def erp(make_client, fake) -> AcumaticaErp:
    # The customer every test document belongs to (its currency is checked before a create).
    fake.on(
        "GET",
        "Customer/ZA00012345",
        json_response(200, {"CustomerID": {"value": "ZA00012345"}, "CurrencyID": {"value": "USD"}}),
    )
    return AcumaticaErp(make_client())


def test_create_document_in_another_currency_than_the_customer_is_refused(fake, erp):
    with pytest.raises(Rejected) as info:
        erp.create_document(invoice_doc(currency="EUR"))
    assert str(info.value).startswith(
        "acumatica: invoice INV00001234 is in EUR but customer ZA00012345 is in USD in Acumatica"
    )
    assert fake.data_requests("PUT") == []


def test_create_document_for_a_missing_customer_is_not_found(fake, erp):
    fake.on(
        "GET",
        "Customer/ZA404",
        http_error(
            500,
            "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException",
            "No entity satisfies the condition.",
        ),
    )
    with pytest.raises(NotFound):
        erp.create_document(invoice_doc(customer_id="ZA404"))


def test_customer_currency_is_read_once_per_process(fake, erp):
    fake.on(
        "PUT", "Invoice", json_response(200, {"Type": {"value": "Invoice"}, "ReferenceNbr": {"value": "AR1"}})
    )
    erp.create_document(invoice_doc())
    erp.create_document(invoice_doc(natural_key="INV2"))
    assert [r.url.path.rsplit("/", 1)[-1] for r in fake.data_requests("GET")] == ["ZA00012345"]


def test_adapter_satisfies_the_port(erp):
    assert isinstance(erp, ErpTarget)


def test_upsert_customer_puts_by_key(fake, erp):
    fake.on(
        "PUT",
        "Customer",
        json_response(200, {"id": "c1", "CustomerID": {"value": "ZA1"}, "Status": {"value": "Active"}}),
    )
    ref = erp.upsert_customer(
        Customer(
            customer_id="ZA1", name="Acme", currency="USD", zuora_account_id="8a", zuora_account_number="A1"
        )
    )
    assert ref == ErpRef("customer", "ZA1", True)


def test_create_document_returns_an_unreleased_reference(fake, erp):
    fake.on(
        "PUT",
        "Invoice",
        json_response(
            200,
            {
                "id": "7b89",
                "Type": {"value": "Invoice"},
                "ReferenceNbr": {"value": "AR006789"},
                "Status": {"value": "Balanced"},
            },
        ),
    )
    ref = erp.create_document(invoice_doc())
    assert ref == ErpRef("invoice", "Invoice/AR006789", False)
    assert (ref.erp_id, ref.status) == ("7b89", "Balanced")
    assert body_of(fake.data_requests("PUT")[0])["CustomerOrder"] == {"value": "INV00001234"}


def test_create_document_answer_without_number_is_outcome_unknown(fake, erp):
    fake.on("PUT", "Invoice", json_response(200, {"id": "7b89"}))
    with pytest.raises(OutcomeUnknown):
        erp.create_document(invoice_doc())


def test_find_document_filters_by_natural_key_with_quotes_escaped(fake, erp):
    route = fake.on(
        "GET",
        "Invoice",
        json_response(
            200,
            [
                {
                    "id": "1",
                    "Type": {"value": "Invoice"},
                    "ReferenceNbr": {"value": "AR7"},
                    "Status": {"value": "Open"},
                    "CustomerOrder": {"value": "INV'7 & Co"},
                },
            ],
        ),
    )
    ref = erp.find_document("invoice", "INV'7 & Co")
    assert ref == ErpRef("invoice", "Invoice/AR7", True)
    request = fake.data_requests()[0]
    assert filter_of(request) == "CustomerOrder eq 'INV''7 & Co' and Type eq 'Invoice'"
    assert b"CustomerOrder%20eq%20%27INV%27%277%20%26%20Co%27" in request.url.query
    assert b"$select=Type,ReferenceNbr,Status,CustomerOrder" in request.url.query
    assert route.hits == 1


def test_find_document_none_when_nothing_matches(fake, erp):
    fake.on("GET", "Payment", json_response(200, []))
    assert erp.find_document("payment", "P-1", "ZA1") is None
    assert (
        filter_of(fake.data_requests()[0])
        == "PaymentRef eq 'P-1' and Type eq 'Payment' and CustomerID eq 'ZA1'"
    )


def test_find_document_two_matches_are_duplicates_for_a_person(fake, erp):
    rows = [
        {
            "Type": {"value": "Invoice"},
            "ReferenceNbr": {"value": n},
            "Status": {"value": "Balanced"},
            "CustomerOrder": {"value": "INV1"},
        }
        for n in ("AR1", "AR2")
    ]
    fake.on("GET", "Invoice", json_response(200, rows))
    with pytest.raises(DuplicateDocuments) as info:
        erp.find_document("invoice", "INV1")
    assert [r.key for r in info.value.refs] == ["Invoice/AR1", "Invoice/AR2"]
    assert isinstance(info.value, Rejected)


def test_find_journal_ignores_longer_numbers_sharing_the_prefix(fake, erp):
    fake.on(
        "GET",
        "JournalTransaction",
        json_response(
            200,
            [
                {
                    "Module": {"value": "GL"},
                    "BatchNbr": {"value": "000045"},
                    "Status": {"value": "Posted"},
                    "Description": {"value": "JE-00000012 Invoice Item Jun'25"},
                },
                {
                    "Module": {"value": "GL"},
                    "BatchNbr": {"value": "000046"},
                    "Status": {"value": "Balanced"},
                    "Description": {"value": "JE-000000123 Invoice Item"},
                },
            ],
        ),
    )
    assert erp.find_document("journal", "JE-00000012") == ErpRef("journal", "GL/000045", True)
    assert filter_of(fake.data_requests()[0]) == "startswith(Description,'JE-00000012') and Module eq 'GL'"


def test_find_customer_by_key_url(fake, erp):
    fake.on(
        "GET",
        "Customer/ZA1",
        json_response(200, {"CustomerID": {"value": "ZA1"}, "Status": {"value": "Active"}}),
    )
    fake.on(
        "GET",
        "Customer/ZA2",
        http_error(
            500,
            "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException",
            "No entity satisfies the condition.",
        ),
    )
    assert erp.find_document("customer", "ZA1") == ErpRef("customer", "ZA1", True)
    assert erp.find_document("customer", "ZA2") is None


def test_create_payment_resolves_applications_by_natural_key(fake, erp):
    fake.on(
        "GET",
        "Invoice",
        json_response(
            200,
            [
                {
                    "Type": {"value": "Invoice"},
                    "ReferenceNbr": {"value": "AR006789"},
                    "Status": {"value": "Open"},
                    "CustomerOrder": {"value": "INV00001234"},
                },
            ],
        ),
    )
    fake.on(
        "PUT",
        "Payment",
        json_response(
            200,
            {
                "Type": {"value": "Payment"},
                "ReferenceNbr": {"value": "000456"},
                "Status": {"value": "Balanced"},
            },
        ),
    )
    ref = erp.create_payment(
        payment(applications=(Application(natural_key="INV00001234", amount=D("99.00")),))
    )
    assert ref == ErpRef("payment", "Payment/000456", False)
    sent = body_of(fake.data_requests("PUT")[0])
    assert sent["DocumentsToApply"] == [
        {
            "DocType": {"value": "Invoice"},
            "ReferenceNbr": {"value": "AR006789"},
            "AmountPaid": {"value": D("99.00")},
        }
    ]
    assert filter_of(fake.data_requests("GET")[1]) == (
        "CustomerOrder eq 'INV00001234' and Type eq 'Invoice' and Customer eq 'ZA00012345'"
    )


def test_create_payment_for_a_missing_invoice_is_not_found(fake, erp):
    fake.on("GET", "Invoice", json_response(200, []))
    with pytest.raises(NotFound):
        erp.create_payment(payment(applications=(Application(natural_key="INV9", amount=D("1.00")),)))
    assert fake.data_requests("PUT") == []


def test_create_payment_for_an_unreleased_invoice_is_transient(fake, erp):
    fake.on(
        "GET",
        "Invoice",
        json_response(
            200,
            [
                {
                    "Type": {"value": "Invoice"},
                    "ReferenceNbr": {"value": "AR1"},
                    "Status": {"value": "Balanced"},
                    "CustomerOrder": {"value": "INV1"},
                },
            ],
        ),
    )
    with pytest.raises(Transient):
        erp.create_payment(payment(applications=(Application(natural_key="INV1", amount=D("1.00")),)))


def test_post_journal(fake, erp):
    fake.on(
        "PUT",
        "JournalTransaction",
        json_response(
            200, {"Module": {"value": "GL"}, "BatchNbr": {"value": "000045"}, "Status": {"value": "Balanced"}}
        ),
    )
    assert erp.post_journal(journal()) == ErpRef("journal", "GL/000045", False)


# -- release ------------------------------------------------------------------------------------------


def test_release_polls_then_rereads_status(fake, erp):
    location = "/AcumaticaERP/entity/Default/24.200.001/Invoice/ReleaseInvoice/status/abc"
    fake.on("POST", "Invoice/ReleaseInvoice", httpx.Response(202, headers={"Location": location}))
    fake.on("GET", "Invoice/ReleaseInvoice/status/abc", httpx.Response(202), httpx.Response(204))
    fake.on(
        "GET",
        "Invoice/Credit Memo/AR7",
        json_response(
            200,
            {"Type": {"value": "Credit Memo"}, "ReferenceNbr": {"value": "AR7"}, "Status": {"value": "Open"}},
        ),
    )
    released = erp.release(ErpRef("credit_memo", "Credit Memo/AR7", False))
    assert released == ErpRef("credit_memo", "Credit Memo/AR7", True)
    assert body_of(fake.data_requests("POST")[0]) == {
        "entity": {"Type": {"value": "Credit Memo"}, "ReferenceNbr": {"value": "AR7"}}
    }
    reread = fake.data_requests("GET")[-1]
    assert reread.url.raw_path == (
        b"/AcumaticaERP/entity/Default/24.200.001/Invoice/Credit%20Memo/AR7?$select=Type,ReferenceNbr,Status"
    )


def test_release_by_entity_id_when_known(fake, erp):
    fake.on("POST", "JournalTransaction/ReleaseJournalTransaction", httpx.Response(204))
    fake.on(
        "GET",
        "JournalTransaction/GL/000045",
        json_response(
            200, {"Module": {"value": "GL"}, "BatchNbr": {"value": "000045"}, "Status": {"value": "Posted"}}
        ),
    )
    released = erp.release(ErpRef("journal", "GL/000045", False, erp_id="9a1f"))
    assert released.released and released.status == "Posted"
    assert json.loads(fake.data_requests("POST")[0].content) == {"entity": {"id": "9a1f"}}


def test_release_of_a_released_document_sends_nothing(fake, erp):
    ref = ErpRef("invoice", "Invoice/AR1", True)
    assert erp.release(ref) is ref
    assert fake.requests == []


def test_release_refused_because_already_released_counts_as_done(fake, erp):
    fake.on(
        "POST",
        "Payment/ReleasePayment",
        http_error(500, "PX.Data.PXException", "Document Status is invalid for processing."),
    )
    fake.on(
        "GET",
        "Payment/Payment/000456",
        json_response(
            200,
            {
                "Type": {"value": "Payment"},
                "ReferenceNbr": {"value": "000456"},
                "Status": {"value": "Closed"},
            },
        ),
    )
    assert erp.release(ErpRef("payment", "Payment/000456", False)).released


def test_release_that_leaves_the_document_unreleased_is_rejected(fake, erp):
    fake.on("POST", "Invoice/ReleaseInvoice", httpx.Response(204))
    fake.on(
        "GET",
        "Invoice/Invoice/AR1",
        json_response(
            200,
            {"Type": {"value": "Invoice"}, "ReferenceNbr": {"value": "AR1"}, "Status": {"value": "On Hold"}},
        ),
    )
    with pytest.raises(Rejected) as info:
        erp.release(ErpRef("invoice", "Invoice/AR1", False))
    assert "Invoice/AR1 is On Hold" in str(info.value)


# -- reconciliation and reference data -------------------------------------------------------------------


def _batch(nbr: str, description: str, lines, status="Posted", currency="USD", period="062025"):
    return {
        "Module": {"value": "GL"},
        "BatchNbr": {"value": nbr},
        "Status": {"value": status},
        "Description": {"value": description},
        "CurrencyID": {"value": currency},
        "PostPeriod": {"value": period},
        "Details": [
            {"Account": {"value": a}, "DebitAmount": {"value": d}, "CreditAmount": {"value": c}}
            for a, d, c in lines
        ],
    }


def test_journal_totals_by_natural_keys(fake, erp):
    fake.on(
        "GET",
        "JournalTransaction",
        json_response(
            200,
            [
                _batch("000045", "JE-00000012 Invoice Item", [("11000", 100.5, 0), ("40000", 0, 100.5)]),
            ],
        ),
    )
    totals = erp.journal_totals(natural_keys=["JE-00000012", "JE-00000013"])
    assert totals == {("11000", "USD"): Totals(D("100.5"), D(0)), ("40000", "USD"): Totals(D(0), D("100.5"))}
    [request] = fake.data_requests()
    assert b"$expand=Details" in request.url.query
    assert filter_of(request) == (
        "(startswith(Description,'JE-00000012') or startswith(Description,'JE-00000013')) and Module eq 'GL'"
    )


def test_journal_totals_ignore_a_batch_whose_description_only_shares_a_prefix(fake, erp):
    fake.on(
        "GET",
        "JournalTransaction",
        json_response(
            200,
            [
                _batch("1", "JE-1 a", [("11000", 1, 0), ("40000", 0, 1)]),
                _batch("2", "JE-10 b", [("11000", 7, 0), ("40000", 0, 7)]),
            ],
        ),
    )
    assert erp.journal_totals(natural_keys=["JE-1"]) == {
        ("11000", "USD"): Totals(D(1), D(0)),
        ("40000", "USD"): Totals(D(0), D(1)),
    }


def test_key_groups_bound_keys_and_characters_per_read():
    keys = [f"JE-{n:08d}" for n in range(2 * KEYS_PER_READ + 1)]
    assert [len(g) for g in key_groups([*keys, keys[0]])] == [KEYS_PER_READ, KEYS_PER_READ, 1]
    long_keys = ["x" * 400, "y" * 400, "z" * 400]
    assert key_groups(long_keys) == [long_keys[:2], long_keys[2:]]
    assert key_groups([]) == []


def test_journal_totals_by_period_pages_and_skips_voided(fake, erp, monkeypatch):
    monkeypatch.setattr("shared.erp.acumatica.PAGE_SIZE", 2)
    page1 = [
        _batch("1", "JE-1 a", [("11000", 10, 0), ("40000", 0, 10)]),
        _batch("2", "JE-2 b", [("11000", 5, 0), ("40000", 0, 5)], status="Voided"),
    ]
    page2 = [_batch("3", "JE-3 c", [("11000", "2.25", 0), ("40000", 0, "2.25")], currency="EUR")]
    fake.on("GET", "JournalTransaction", json_response(200, page1), json_response(200, page2))
    totals = erp.journal_totals(period="2025-06")
    assert totals == {
        ("11000", "USD"): Totals(D(10), D(0)),
        ("40000", "USD"): Totals(D(0), D(10)),
        ("11000", "EUR"): Totals(D("2.25"), D(0)),
        ("40000", "EUR"): Totals(D(0), D("2.25")),
    }
    requests = fake.data_requests()
    assert (
        filter_of(requests[0])
        == "PostPeriod eq '062025' and Module eq 'GL' and startswith(Description,'JE-')"
    )
    assert [r.url.params["$skip"] for r in requests] == ["0", "2"]


def test_check_reference_data_reports_missing_inactive_and_closed(fake, erp):
    no_entity = http_error(
        500,
        "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException",
        "No entity satisfies the condition.",
    )
    fake.on(
        "GET",
        "Account/11000",
        json_response(200, {"AccountCD": {"value": "11000"}, "Active": {"value": True}}),
    )
    fake.on(
        "GET",
        "Account/40000",
        json_response(200, {"AccountCD": {"value": "40000"}, "Active": {"value": False}}),
    )
    fake.on("GET", "Account/99999", no_entity)
    fake.on(
        "GET", "Currency/USD", json_response(200, {"CurrencyID": {"value": "USD"}, "Active": {"value": True}})
    )
    fake.on("GET", "Currency/XTS", no_entity)
    fake.on(
        "GET",
        "FinancialPeriod/2025",
        json_response(
            200,
            {
                "FinancialYear": {"value": "2025"},
                "Details": [
                    {
                        "FinancialPeriodID": {"value": "052025"},
                        "PeriodNbr": {"value": "05"},
                        "Status": {"value": "Open"},
                        "ClosedInAR": {"value": False},
                    },
                    {
                        "FinancialPeriodID": {"value": "062025"},
                        "PeriodNbr": {"value": "06"},
                        "Status": {"value": "Closed"},
                        "ClosedInAR": {"value": True},
                    },
                ],
            },
        ),
    )
    problems = erp.check_reference_data(["11000", "40000", "99999", "11000"], ["USD", "XTS"], "2025-06")
    assert problems == [
        "account 40000 is inactive in Acumatica",
        "account 99999 does not exist in Acumatica",
        "currency XTS does not exist in Acumatica",
        "financial period 06-2025 is Closed in Acumatica (it must be Open)",
        "financial period 06-2025 is closed in AR in Acumatica",
    ]
    assert erp.check_reference_data(["11000"], ["USD"], dt.date(2025, 5, 31)) == []


def test_check_reference_data_names_the_endpoint_variable(fake, erp):
    fake.endpoints = ("Default/23.200.001",)
    assert erp.check_reference_data(["11000"], ["USD"]) == [
        "endpoint Default/24.200.001 not found on this instance; set LEDGERBRIDGE_ACUMATICA_ENDPOINT "
        "to one of Default/23.200.001"
    ]


def test_close_logs_out(fake, erp):
    fake.on("GET", "Customer/ZA1", json_response(200, {"CustomerID": {"value": "ZA1"}}))
    erp.find_document("customer", "ZA1")
    erp.close()
    assert len(fake.logouts) == 1


def test_from_target_builds_a_client(fake_redis, connection_name):
    from .conftest import make_target

    erp = AcumaticaErp.from_target(
        make_target(),
        connection=connection_name,
        redis=fake_redis,
        transport=httpx.MockTransport(lambda r: httpx.Response(500)),
    )
    assert erp.client.base_url == "https://erp.example.com/AcumaticaERP/entity/Default/24.200.001/"
    erp.close()


def test_the_currency_cache_keeps_only_the_most_recently_used_customers():
    cache = CurrencyCache(2)
    cache.put("C1", "USD")
    cache.put("C2", None)
    assert cache.get("C1") == (True, "USD")  # C1 is now the most recent
    cache.put("C3", "EUR")
    assert [cache.get(c) for c in ("C1", "C2", "C3")] == [(True, "USD"), (False, None), (True, "EUR")]
    assert len(cache) == 2


# -- render: the request a write sends, built by the same code, sent nowhere --------------------------


def assert_sent_as_rendered(request: httpx.Request, rendered: RenderedRequest) -> None:
    """The request on the wire is the rendered one: method, URL and the body's very bytes."""
    assert (request.method, str(request.url)) == (rendered.method, BASE + rendered.path)
    assert request.content == dumps(rendered.body).encode()
    assert rendered.operation == f"PUT {rendered.path}"


CUSTOMER = Customer(
    customer_id="ZA00012345",
    name="Acme Corp",
    currency="USD",
    zuora_account_id="2c92c0f8",
    zuora_account_number="A00000001",
    email="ap@acme.com",
    country="US",
)


@pytest.mark.parametrize(
    ("entity", "document", "answer"),
    [
        ("Customer", CUSTOMER, {"CustomerID": {"value": "ZA00012345"}}),
        ("Invoice", invoice_doc(), {"Type": {"value": "Invoice"}, "ReferenceNbr": {"value": "AR1"}}),
        ("Payment", payment(), {"Type": {"value": "Payment"}, "ReferenceNbr": {"value": "000456"}}),
        ("JournalTransaction", journal(), {"Module": {"value": "GL"}, "BatchNbr": {"value": "000045"}}),
    ],
    ids=["customer", "invoice", "payment", "journal"],
)
def test_render_is_the_put_the_write_sends(fake, erp, entity, document, answer):
    fake.on("PUT", entity, json_response(200, answer))
    write = {
        "Customer": erp.upsert_customer,
        "Invoice": erp.create_document,
        "Payment": erp.create_payment,
        "JournalTransaction": erp.post_journal,
    }[entity]

    write(document)
    rendered = erp.render(document)

    (sent,) = fake.data_requests("PUT")
    assert_sent_as_rendered(sent, rendered)
    assert (rendered.target, rendered.path, rendered.unresolved) == ("acumatica", entity, ())


@pytest.mark.parametrize("kind", ["payment", "credit_memo"])
def test_render_puts_the_applied_documents_reference_where_the_write_puts_the_one_it_looked_up(
    fake, erp, kind
):
    fake.on(
        "GET",
        "Invoice",
        json_response(
            200,
            [
                {
                    "Type": {"value": "Invoice"},
                    "ReferenceNbr": {"value": "AR006789"},
                    "Status": {"value": "Open"},
                    "CustomerOrder": {"value": "INV00001234"},
                },
            ],
        ),
    )
    applied = (Application(natural_key="INV00001234", amount=D("40.00")),)
    document: ArDocument | Payment
    if kind == "payment":
        fake.on(
            "PUT",
            "Payment",
            json_response(200, {"Type": {"value": "Payment"}, "ReferenceNbr": {"value": "1"}}),
        )
        document = payment(applications=applied)
        erp.create_payment(document)
    else:
        fake.on(
            "PUT",
            "Invoice",
            json_response(200, {"Type": {"value": "Credit Memo"}, "ReferenceNbr": {"value": "2"}}),
        )
        document = invoice_doc(
            kind="credit_memo", natural_key="CM00000001", due_date=None, applies_to=applied
        )
        erp.create_document(document)
    known: list[Application] = []

    def ledger_ref(app: Application) -> str | None:
        known.append(app)
        return "Invoice/AR006789"

    rendered = erp.render(document, applied=ledger_ref)

    (sent,) = fake.data_requests("PUT")
    assert_sent_as_rendered(sent, rendered)
    assert known == list(applied)
    assert rendered.unresolved == ()


def test_render_shows_an_application_without_a_known_reference_as_a_question_mark(fake, erp):
    applied = Application(natural_key="INV00001234", amount=D("99.00"))

    rendered = erp.render(payment(applications=(applied,)), applied=lambda app: None)

    assert fake.requests == []  # nothing looked up, nothing sent
    assert rendered.body["DocumentsToApply"] == [
        {"DocType": {"value": "Invoice"}, "ReferenceNbr": {"value": "?"}, "AmountPaid": {"value": D("99.00")}}
    ]
    assert rendered.unresolved == (applied,)
