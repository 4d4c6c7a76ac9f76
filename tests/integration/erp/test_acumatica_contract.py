# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""Contract tests: the Acumatica adapter against the Acumatica sandbox over loopback HTTP.

Both sides follow acumatica-api.md; these tests prove they agree on the wire: every document
type is created, found again by its Zuora natural key and released; sessions (cookie and OAuth)
are shared, renewed and ended; 422 field errors, a wrong endpoint and missing reference data
come back as typed errors or problems a person can act on.

Unwrapped values are impossible by construction: every body goes through
``shared.erp.acumatica_wire.wrap`` (proved over arbitrary records by the property test
``tests/unit/erp/test_acumatica_wire.py::test_wrap_every_non_system_leaf_is_a_value_object``);
the sandbox answers an unwrapped field with 400 (section 3.3), and the scenarios below assert
it never had to.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.erp.acumatica import AcumaticaErp
from shared.erp.base import (
    Application,
    ArDocument,
    ArLine,
    Customer,
    ErpRef,
    Journal,
    JournalLine,
    Payment,
    Totals,
)
from shared.erp.errors import ClosedPeriod, DuplicateDocuments, EndpointNotFound
from shared.errors import Reason, Rejected
from shared.exchange import REDACTED
from shared.mapping import check_mapping, load_mapping

from .conftest import Exchanges, cookie_target, oauth_target

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[3]
D = Decimal
# The sandbox seeds open financial years around its own today (UTC); documents are dated today.
TODAY = dt.datetime.now(dt.UTC).date()
PERIOD = f"{TODAY.month:02d}{TODAY.year}"  # the wire form MMYYYY (section 6.2)


def customer(customer_id: str = "ZA0001") -> Customer:
    return Customer(
        customer_id=customer_id,
        name="Acme Corp",
        currency="USD",
        zuora_account_id="2c92c0f8-acme",
        zuora_account_number="A00000001",
        email="ap@acme.example",
        customer_class="DEFAULT",
        city="Austin",
        country="US",
    )


def document(kind: str, number: str, *amounts: str, applies_to=(), customer_id="ZA0001", **kw) -> ArDocument:
    lines = tuple(
        ArLine(description=f"line {i}", amount=D(a), account="40000", subaccount="000000", branch="HQ")
        for i, a in enumerate(amounts, start=1)
    )
    return ArDocument(
        kind=kind,  # type: ignore[arg-type]
        natural_key=number,
        customer_id=customer_id,
        date=TODAY,
        currency="USD",
        description=f"Zuora {number}",
        lines=lines,
        due_date=TODAY + dt.timedelta(days=30) if kind != "credit_memo" else None,
        applies_to=tuple(applies_to),
        **kw,
    )


def payment(kind: str, number: str, amount: str, applications=(), cash_account="10200") -> Payment:
    return Payment(
        kind=kind,  # type: ignore[arg-type]
        natural_key=number,
        customer_id="ZA0001",
        date=TODAY,
        amount=D(amount),
        currency="USD",
        payment_method="CHECK",
        cash_account=cash_account,
        description=f"Zuora {number}",
        applications=tuple(applications),
    )


def journal(number: str, amount: str = "1000.00") -> Journal:
    return Journal(
        natural_key=number,
        date=TODAY,
        post_period=TODAY,
        currency="USD",
        ledger="ACTUAL",
        branch="HQ",
        description="Invoice Item",
        lines=(
            JournalLine(account="11000", subaccount="000000", debit=D(amount), description="AR"),
            JournalLine(account="40000", subaccount="000000", credit=D(amount), description="Revenue"),
        ),
    )


def by_number(rows: list[dict[str, Any]], key: str = "ReferenceNbr") -> dict[str, dict[str, Any]]:
    return {f"{row['Type']}/{row[key]}": row for row in rows}


def create_and_release(erp: AcumaticaErp, kind: str, created: ErpRef, natural_key: str) -> ErpRef:
    """The posting path of one document: found by natural key as created, then released."""
    assert not created.released
    assert erp.find_document(kind, natural_key) == created  # type: ignore[arg-type]
    released = erp.release(created)
    assert released.released
    assert erp.find_document(kind, natural_key) == released  # type: ignore[arg-type]
    return released


# -- documents -------------------------------------------------------------------------------------


def test_every_ar_document_type_is_created_found_by_natural_key_and_released(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))

    cust = erp.upsert_customer(customer())
    assert cust == ErpRef("customer", "ZA0001", True)
    assert erp.find_document("customer", "ZA0001") == cust

    invoice = create_and_release(
        erp,
        "invoice",
        erp.create_document(document("invoice", "INV00000001", "99.00", "1.00")),
        "INV00000001",
    )
    debit_memo = create_and_release(
        erp, "debit_memo", erp.create_document(document("debit_memo", "DM00000001", "10.00")), "DM00000001"
    )
    credit_memo = create_and_release(
        erp,
        "credit_memo",
        erp.create_document(
            document(
                "credit_memo",
                "CM00000001",
                "25.00",
                applies_to=[Application(natural_key="INV00000001", amount=D("20.00"))],
            )
        ),
        "CM00000001",
    )
    paid = create_and_release(
        erp,
        "payment",
        erp.create_payment(
            payment(
                "payment",
                "P-00000001",
                "90.00",
                [
                    Application(natural_key="INV00000001", amount=D("80.00")),
                    Application(natural_key="DM00000001", amount=D("10.00"), kind="debit_memo"),
                ],
            )
        ),
        "P-00000001",
    )
    unapplied = create_and_release(
        erp, "payment", erp.create_payment(payment("payment", "P-00000002", "50.00")), "P-00000002"
    )
    refund = create_and_release(
        erp,
        "refund",
        erp.create_payment(
            payment(
                "refund",
                "R-00000001",
                "30.00",
                [Application(natural_key="P-00000002", amount=D("30.00"), kind="payment")],
            )
        ),
        "R-00000001",
    )

    documents = by_number(sandbox.state("Invoice"))
    assert {
        key: (row["CustomerOrder"], row["Status"], row["Amount"], row["Balance"])
        for key, row in documents.items()
    } == {
        invoice.key: ("INV00000001", "Closed", 100.0, 0.0),  # 20 by the credit memo, 80 by P-1
        debit_memo.key: ("DM00000001", "Closed", 10.0, 0.0),
        credit_memo.key: ("CM00000001", "Open", 25.0, 5.0),  # 5 of 25 left to apply
    }
    assert [(a["DocType"], a["AmountPaid"]) for a in documents[invoice.key]["ApplicationsDefault"]] == [
        ("Credit Memo", 20.0),
        ("Payment", 80.0),
    ]
    payments = by_number(sandbox.state("Payment"))
    assert {
        key: (row["PaymentRef"], row["Status"], row["PaymentAmount"])
        for key, row in payments.items()
        if row["Type"] != "Credit Memo"  # the Payment entity lists credit memos too (pitfall 15)
    } == {
        paid.key: ("P-00000001", "Closed", 90.0),
        unapplied.key: ("P-00000002", "Open", 50.0),  # 30 of 50 refunded
        refund.key: ("R-00000001", "Closed", 30.0),
    }
    assert [
        k.split("/")[0] for k in (invoice.key, debit_memo.key, credit_memo.key, paid.key, refund.key)
    ] == [
        "Invoice",
        "Debit Memo",
        "Credit Memo",
        "Payment",
        "Refund",
    ]
    assert "400" not in sandbox.counts()["statuses"]  # nothing was sent unwrapped (section 3.3)


def test_applications_made_after_their_documents_close_what_they_pay_once(acumatica_sandbox, make_erp):
    """A payment, a refund and a credit memo released unapplied (what they apply to was not in
    Acumatica yet) are applied later through the Payment entity; applying again, as after a lost
    answer, changes nothing."""
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    erp.upsert_customer(customer())
    invoice = create_and_release(
        erp, "invoice", erp.create_document(document("invoice", "INV00000009", "100.00")), "INV00000009"
    )
    memo_target = create_and_release(
        erp, "debit_memo", erp.create_document(document("debit_memo", "DM00000009", "15.00")), "DM00000009"
    )
    paid = create_and_release(
        erp, "payment", erp.create_payment(payment("payment", "P-00000009", "70.00")), "P-00000009"
    )
    credit = create_and_release(
        erp, "credit_memo", erp.create_document(document("credit_memo", "CM00000009", "15.00")), "CM00000009"
    )
    spare = create_and_release(
        erp, "payment", erp.create_payment(payment("payment", "P-00000010", "40.00")), "P-00000010"
    )
    refund = create_and_release(
        erp, "refund", erp.create_payment(payment("refund", "R-00000009", "40.00")), "R-00000009"
    )

    later = [
        (paid, Application(natural_key="INV00000009", amount=D("70.00"))),
        (credit, Application(natural_key="DM00000009", amount=D("15.00"), kind="debit_memo")),
        (refund, Application(natural_key="P-00000010", amount=D("40.00"), kind="payment")),
    ]
    made = [erp.apply_later(ref, app, "ZA0001") for ref, app in later]
    again = [erp.apply_later(ref, app, "ZA0001") for ref, app in later]

    assert made == [(invoice, True), (memo_target, True), (spare, True)]
    assert [(ref.key, now) for ref, now in again] == [
        (invoice.key, False),
        (memo_target.key, False),
        (spare.key, False),
    ]
    documents = by_number(sandbox.state("Invoice"))
    assert (documents[invoice.key]["Status"], documents[invoice.key]["Balance"]) == ("Open", 30.0)
    assert (documents[memo_target.key]["Status"], documents[memo_target.key]["Balance"]) == ("Closed", 0.0)
    payments = by_number(sandbox.state("Payment"))
    assert {key: payments[key]["Status"] for key in (paid.key, credit.key, spare.key, refund.key)} == {
        paid.key: "Closed",
        credit.key: "Closed",
        spare.key: "Closed",
        refund.key: "Closed",
    }
    history = erp.client.get_record("Payment", *paid.key.split("/"), expand=["ApplicationHistory"])
    assert [(h["DisplayRefNbr"], D(str(h["AmountPaid"]))) for h in history["ApplicationHistory"]] == [
        (invoice.key.split("/")[1], D("70.00"))
    ]
    assert "400" not in sandbox.counts()["statuses"]


def test_gl_journal_is_created_found_released_and_read_back(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    entry = journal("JE-00000012", "1234.56")

    created = erp.post_journal(entry)
    released = create_and_release(erp, "journal", created, "JE-00000012")

    assert released.key.startswith("GL/") and released.status == "Posted"
    [batch] = sandbox.state("JournalTransaction")
    assert (batch["Description"], batch["PostPeriod"], batch["Status"]) == (
        "JE-00000012 Invoice Item",
        PERIOD,
        "Posted",
    )
    assert [
        (line["Account"], line["DebitAmount"], line["CreditAmount"], line["TransactionDescription"])
        for line in batch["Details"]
    ] == [
        ("11000", 1234.56, 0.0, "AR"),
        ("40000", 0.0, 1234.56, "Revenue"),
    ]
    expected = {("11000", "USD"): Totals(D("1234.56"), D(0)), ("40000", "USD"): Totals(D(0), D("1234.56"))}
    assert erp.journal_totals(natural_keys=["JE-00000012"]) == expected
    assert erp.journal_totals(period=TODAY) == expected
    assert "400" not in sandbox.counts()["statuses"]


def test_journal_totals_of_many_batches_are_read_in_groups_concurrently_and_sum_each_once(
    acumatica_sandbox, make_erp
):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url, max_concurrent=4))
    numbers = [f"JE-{n:08d}" for n in range(1, 46)]
    for n, number in enumerate(numbers, start=1):
        erp.post_journal(journal(number, f"{n}.01"))
    total = sum((D(f"{n}.01") for n in range(1, 46)), D(0))
    sandbox.reset_counts()

    totals = erp.journal_totals(natural_keys=[*numbers, "JE-99999999"])  # one not in the ERP

    assert totals == {("11000", "USD"): Totals(total, D(0)), ("40000", "USD"): Totals(D(0), total)}
    # 46 keys, 20 to a read: 3 reads, each an OData `or` of Description prefixes.
    assert sandbox.counts()["calls"]["GET JournalTransaction"] == 3
    assert erp.journal_totals(natural_keys=numbers[:2]) == {
        ("11000", "USD"): Totals(D("3.02"), D(0)),
        ("40000", "USD"): Totals(D(0), D("3.02")),
    }


def test_instance_in_a_virtual_directory_signs_in_posts_and_polls_under_the_site_path(
    acumatica_sandbox, make_erp
):
    # IIS may host the site under /AcumaticaERP (section 1.1); an action's Location is then a
    # server-relative path that already includes the site (section 4.4).
    sandbox = acumatica_sandbox(site_path="/AcumaticaERP")
    erp = make_erp(cookie_target(f"{sandbox.url}/AcumaticaERP"))
    erp.upsert_customer(customer())

    released = erp.release(erp.create_document(document("invoice", "INV00000009", "12.00")))

    assert released.released and released.status == "Open"
    assert sandbox.counts()["calls"]["GET Invoice/ReleaseInvoice/status"] >= 1


def test_find_document_is_none_for_an_unknown_natural_key(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))

    assert [
        erp.find_document(kind, "NOPE-1") for kind in ("customer", "invoice", "payment", "refund", "journal")
    ] == [None] * 5


def test_find_document_reports_two_documents_with_one_natural_key(acumatica_sandbox, make_erp):
    # Acumatica keeps no uniqueness on CustomerOrder (section 7): a second create makes a duplicate
    # that only a person can resolve.
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    erp.upsert_customer(customer())
    first = erp.create_document(document("invoice", "INV00000007", "5.00"))
    second = erp.create_document(document("invoice", "INV00000007", "5.00"))

    with pytest.raises(DuplicateDocuments) as caught:
        erp.find_document("invoice", "INV00000007")

    assert set(caught.value.refs) == {first, second}


def test_release_of_a_released_document_is_idempotent(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    erp.upsert_customer(customer())
    created = erp.create_document(document("invoice", "INV00000002", "10.00"))
    released = erp.release(created)
    calls_before = sandbox.counts()["calls"].get("POST Invoice/ReleaseInvoice")

    # An in-doubt release retried with the stale (unreleased) reference: the action fails on the
    # server ("Document Status is invalid"), the re-read shows it released, so it counts as done.
    again = erp.release(created)

    assert again == released and again.released
    assert sandbox.counts()["calls"]["POST Invoice/ReleaseInvoice"] == calls_before + 1


# -- errors ----------------------------------------------------------------------------------------


def test_wrong_endpoint_version_names_the_setting_to_fix(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox(endpoint="Default/24.200.001")
    erp = make_erp(cookie_target(sandbox.url, endpoint="Default/22.200.001"))

    with pytest.raises(EndpointNotFound) as caught:
        erp.find_document("invoice", "INV00000001")

    assert caught.value.status == 404
    assert caught.value.message == (
        "endpoint Default/22.200.001 not found on this instance; set LEDGERBRIDGE_ACUMATICA_ENDPOINT "
        f"to one of Default/24.200.001 (GET {sandbox.url}/entity lists them)"
    )
    assert erp.check_reference_data(["40000"], ["USD"]) == [
        "endpoint Default/22.200.001 not found on this instance; set LEDGERBRIDGE_ACUMATICA_ENDPOINT "
        "to one of Default/24.200.001"
    ]


def test_422_field_errors_surface_as_rejected_naming_the_field(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    erp.upsert_customer(customer())
    bad_line = ArDocument(
        kind="invoice",
        natural_key="INV00000003",
        customer_id="ZA0001",
        date=TODAY,
        currency="USD",
        description="Zuora INV00000003",
        lines=(
            ArLine(description="plan", amount=D("10.00"), account="40000"),
            ArLine(description="fee", amount=D("2.00"), account="99999"),
        ),
    )

    with pytest.raises(Rejected) as invoice_error:
        erp.create_document(bad_line)
    with pytest.raises(Rejected) as payment_error:
        erp.create_payment(payment("payment", "P-00000003", "5.00", cash_account="77777"))

    assert invoice_error.value.status == 422
    assert invoice_error.value.reasons == (
        Reason(
            "record",
            "Inserting  'AR Invoice' record raised at least one error. Please review the errors.",
            None,
        ),
        Reason("field", "Account '99999' cannot be found in the system.", "Details[2].Account"),
    )
    assert payment_error.value.status == 422
    assert Reason("field", "Cash Account '77777' cannot be found in the system.", "CashAccount") in (
        payment_error.value.reasons
    )
    assert sandbox.state("Invoice") == [] and sandbox.state("Payment") == []


def test_422_for_a_closed_period_names_the_period_field(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    erp.upsert_customer(customer())
    sandbox.period_status(PERIOD, "Closed")

    with pytest.raises(Rejected) as caught:
        erp.create_document(document("invoice", "INV00000004", "10.00", post_period=TODAY))

    assert caught.value.status == 422
    assert (
        Reason("field", f"The {PERIOD[:2]}-{PERIOD[2:]} financial period is closed.", "PostPeriod")
        in caught.value.reasons
    )


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def test_a_closed_period_parks_by_default_naming_the_period_and_what_to_do(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    erp.upsert_customer(customer())
    sandbox.period_status(PERIOD, "Closed")

    with pytest.raises(ClosedPeriod) as caught:
        erp.create_document(document("invoice", "INV00000005", "10.00"))

    assert caught.value.period == f"{TODAY.year:04d}-{TODAY.month:02d}"
    assert "open it in Acumatica and replay the record" in caught.value.message
    assert "next_open" in caught.value.message
    assert erp.find_document("invoice", "INV00000005") is None


def test_next_open_posts_into_the_next_open_period_with_a_note(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url, closed_period="next_open"))
    erp.upsert_customer(customer())
    sandbox.period_status(PERIOD, "Closed")
    following = _next_month(TODAY)
    label = f"{following.year:04d}-{following.month:02d}"

    invoice = erp.create_document(document("invoice", "INV00000006", "10.00"))
    paid = erp.create_payment(payment("payment", "P-00000006", "10.00"))

    assert (
        invoice.note
        == f"posted in {label}: its own period {TODAY.year:04d}-{TODAY.month:02d} is closed in Acumatica"
    )
    assert paid.note is not None and paid.note.startswith(f"dated {following.isoformat()} in {label}")
    rows = by_number(sandbox.state("Invoice"))
    assert rows[invoice.key]["PostPeriod"] == f"{following.month:02d}{following.year:04d}"
    assert invoice.note in rows[invoice.key]["Description"]
    payments = by_number(sandbox.state("Payment"))
    assert str(payments[paid.key]["ApplicationDate"]).startswith(following.isoformat())
    assert erp.find_document("invoice", "INV00000006") == invoice  # found again by its natural key


# -- sessions --------------------------------------------------------------------------------------


def test_cookie_session_is_shared_by_two_clients_and_logged_out_once(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    first = make_erp(cookie_target(sandbox.url))
    second = make_erp(cookie_target(sandbox.url))  # another worker process of the connection

    first.upsert_customer(customer())
    assert second.find_document("customer", "ZA0001") is not None
    during = sandbox.counts()
    second.close()  # did not sign in: leaves the shared session alone
    after_second = sandbox.counts()
    first.close()  # signed in: logs out
    after_first = sandbox.counts()

    assert (during["logins"], during["open_sessions"]) == (1, 1)
    assert (after_second["logouts"], after_second["open_sessions"]) == (0, 1)
    assert (after_first["logins"], after_first["logouts"], after_first["open_sessions"]) == (1, 1, 0)


def test_cookie_session_expired_by_the_server_signs_in_again_once(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))
    erp.upsert_customer(customer())
    sandbox.advance_clock(601)  # past the 10-minute idle timeout (section 2.1)

    found = erp.find_document("customer", "ZA0001")
    counts = sandbox.counts()
    erp.close()

    assert found is not None and found.key == "ZA0001"
    assert (counts["logins"], counts["unauthorized_401"], counts["sessions_expired"]) == (2, 1, 1)
    assert counts["open_sessions"] == 1
    assert sandbox.counts()["open_sessions"] == 0


def test_shared_session_ended_by_another_worker_is_renewed_not_reported_as_bad_credentials(
    acumatica_sandbox, make_erp
):
    # Worker B's call fails with 401; meanwhile worker C has signed in a new shared session, which
    # then ends too (C shuts down and logs out what it signed in). B adopts C's session on renewal
    # and is refused again: that is not B's login failing, so B signs in itself instead of raising
    # AuthFailed ("check the credentials").
    sandbox = acumatica_sandbox()
    a = make_erp(cookie_target(sandbox.url))
    a.upsert_customer(customer())
    c = make_erp(cookie_target(sandbox.url))
    fired: list[int] = []

    def meanwhile(exchange) -> None:
        if exchange.status == 401 and not fired:
            fired.append(1)
            assert c.find_document("customer", "ZA0001") is not None  # C renews: a new shared session
            sandbox.expire_sessions()  # ... which ends before B uses it

    b = make_erp(cookie_target(sandbox.url), audit=meanwhile)
    assert b.find_document("customer", "ZA0001") is not None  # B adopts A's session
    sandbox.expire_sessions()

    found = b.find_document("customer", "ZA0001")

    counts = sandbox.counts()
    assert found is not None and fired == [1]
    # A's login, C's renewal, B's own renewal; B saw 401 with A's and with C's session.
    assert (counts["logins"], counts["unauthorized_401"]) == (3, 3)


def test_oauth_password_grant_then_refresh_after_expiry_then_logout(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    audit = Exchanges()
    erp = make_erp(oauth_target(sandbox.url), audit=audit)

    erp.upsert_customer(customer())
    other = make_erp(oauth_target(sandbox.url))  # a second process reuses the bearer token
    assert other.find_document("customer", "ZA0001") is not None
    sandbox.expire_sessions()  # the access token and its server session end
    found = erp.find_document("customer", "ZA0001")
    during = sandbox.counts()
    other.close()
    erp.close()
    after = sandbox.counts()

    assert found is not None
    assert audit.token_grants() == ["password", "refresh_token"]
    assert (during["logins"], during["tokens_issued"], during["unauthorized_401"]) == (0, 2, 1)
    assert (after["logouts"], after["open_sessions"]) == (1, 0)
    bearer = [e for e in audit.seen if "/entity/Default/" in e.url]
    assert bearer and all(e.request_headers.get("authorization") == REDACTED for e in bearer)


# -- reference data --------------------------------------------------------------------------------


def test_mapping_example_checks_clean_against_the_seeded_sandbox(acumatica_sandbox, make_erp):
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url))

    assert check_mapping(load_mapping(REPO / "mapping.example.toml"), erp, TODAY) == []


def test_mapping_check_reports_missing_account_and_currency_and_closed_period(
    acumatica_sandbox, make_erp, tmp_path
):
    sandbox = acumatica_sandbox()
    sandbox.period_status(PERIOD, "Closed")
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(
        "[erp]\nbranch = 'HQ'\n"
        "[accounts]\n'Sales Revenue' = { account = '40000' }\n'Deferred Revenue' = { account = '77777' }\n"
        "[payment_methods]\nCheck = { method = 'CHECK', cash_account = '10200' }\n"
        "[currencies]\nUSD = 'USD'\nJPY = 'JPY'\nCAD = 'CAD'\n"
    )
    erp = make_erp(cookie_target(sandbox.url))

    problems = check_mapping(load_mapping(mapping_file), erp, TODAY)

    assert problems == [
        "account 77777 does not exist in Acumatica",
        "currency CAD is inactive in Acumatica",
        "currency JPY does not exist in Acumatica",
        f"financial period {PERIOD[:2]}-{PERIOD[2:]} is Closed in Acumatica (it must be Open)",
        f"financial period {PERIOD[:2]}-{PERIOD[2:]} is closed in AR in Acumatica",
    ]
