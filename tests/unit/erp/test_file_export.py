"""The CSV / JSON Lines GL export: atomic files, manifest totals, no duplicate lines."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

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
    Totals,
)
from shared.erp.file_export import FileExportErp, atomic_write
from shared.errors import NotFound, Transient

D = Decimal


def journal(
    number: str = "JE-00000012", *, amount: str = "100.00", period: str = "2025-06", currency: str = "USD"
) -> Journal:
    year, month = (int(p) for p in period.split("-"))
    return Journal(
        natural_key=number,
        date=dt.date(year, month, 28),
        post_period=period,
        currency=currency,
        ledger="ACTUAL",
        branch="HQ",
        description=f"{number} Invoice Item",
        lines=(
            JournalLine(
                account="11000", subaccount="000000", debit=D(amount), description="Accounts Receivable"
            ),
            JournalLine(
                account="40000",
                subaccount="000000",
                credit=D(amount) - D("0.25"),
                description="Sales Revenue",
            ),
            JournalLine(account="24000", credit=D("0.25"), description="Sales Tax Payable"),
        ),
    )


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_file_export_satisfies_the_port(tmp_path):
    assert isinstance(FileExportErp(tmp_path), ErpTarget)


def test_post_journal_writes_one_row_per_line_in_csv_and_jsonl(tmp_path):
    erp = FileExportErp(tmp_path)
    ref = erp.post_journal(journal())

    assert ref == ErpRef("journal", "2025-06/journal/JE-00000012", True)
    rows = read_jsonl(tmp_path / "2025-06" / "journal.jsonl")
    assert read_csv(tmp_path / "2025-06" / "journal.csv") == rows
    assert rows[0] == {
        "natural_key": "JE-00000012",
        "line": "1",
        "date": "2025-06-28",
        "post_period": "2025-06",
        "currency": "USD",
        "ledger": "ACTUAL",
        "branch": "HQ",
        "description": "JE-00000012 Invoice Item",
        "account": "11000",
        "subaccount": "000000",
        "debit": "100.00",
        "credit": "0",
        "line_description": "Accounts Receivable",
    }
    assert [(r["account"], r["debit"], r["credit"]) for r in rows] == [
        ("11000", "100.00", "0"),
        ("40000", "0", "99.75"),
        ("24000", "0", "0.25"),
    ]


def test_manifest_totals_equal_the_sum_of_the_lines(tmp_path):
    erp = FileExportErp(tmp_path)
    erp.post_journal(journal("JE-00000001", amount="100.10"))
    erp.post_journal(journal("JE-00000002", amount="0.35"))

    manifest = json.loads((tmp_path / "2025-06" / "manifest.json").read_text())
    rows = read_jsonl(tmp_path / "2025-06" / "journal.jsonl")
    debit = sum(D(r["debit"]) for r in rows)
    credit = sum(D(r["credit"]) for r in rows)
    assert debit == credit == D("100.45")
    expected = {"lines": 6, "entries": 2, "debit": "100.45", "credit": "100.45"}
    assert manifest["period"] == "2025-06"
    assert manifest["files"] == {"journal.csv": expected, "journal.jsonl": expected}


def test_reexport_of_the_same_entry_adds_no_line_and_writes_nothing(tmp_path):
    erp = FileExportErp(tmp_path)
    first = erp.post_journal(journal())
    before = {p.name: p.read_bytes() for p in (tmp_path / "2025-06").iterdir()}

    assert erp.post_journal(journal()) == first
    assert {p.name: p.read_bytes() for p in (tmp_path / "2025-06").iterdir()} == before
    assert len(read_jsonl(tmp_path / "2025-06" / "journal.jsonl")) == 3


def test_reexport_with_changed_content_replaces_the_entry_lines(tmp_path):
    erp = FileExportErp(tmp_path)
    erp.post_journal(journal("JE-00000001"))
    erp.post_journal(journal("JE-00000002"))
    erp.post_journal(journal("JE-00000001", amount="200.00"))

    rows = read_jsonl(tmp_path / "2025-06" / "journal.jsonl")
    assert [(r["natural_key"], r["debit"]) for r in rows if r["account"] == "11000"] == [
        ("JE-00000002", "100.00"),
        ("JE-00000001", "200.00"),
    ]
    assert len(read_csv(tmp_path / "2025-06" / "journal.csv")) == 6


def test_reexport_into_another_period_moves_the_entry(tmp_path):
    erp = FileExportErp(tmp_path)
    erp.post_journal(journal(period="2025-06"))
    ref = erp.post_journal(journal(period="2025-07"))
    assert ref.key == "2025-07/journal/JE-00000012"
    assert read_jsonl(tmp_path / "2025-06" / "journal.jsonl") == []
    assert json.loads((tmp_path / "2025-06" / "manifest.json").read_text())["files"]["journal.csv"] == {
        "lines": 0,
        "entries": 0,
    }
    assert len(read_jsonl(tmp_path / "2025-07" / "journal.jsonl")) == 3
    assert erp.find_document("journal", "JE-00000012") == ref


def test_reexport_after_a_crash_before_the_index_adds_no_line(tmp_path):
    erp = FileExportErp(tmp_path)
    erp.post_journal(journal())
    (tmp_path / ".index" / "journal" / "JE-00000012.json").unlink()  # the crash lost the index write
    assert erp.find_document("journal", "JE-00000012") is None

    erp.post_journal(journal())
    assert len(read_jsonl(tmp_path / "2025-06" / "journal.jsonl")) == 3


def test_find_document_reads_the_index(tmp_path):
    erp = FileExportErp(tmp_path)
    assert erp.find_document("journal", "JE-00000012") is None
    erp.post_journal(journal())
    assert erp.find_document("journal", "JE-00000012") == ErpRef(
        "journal", "2025-06/journal/JE-00000012", True
    )
    assert erp.find_document("invoice", "JE-00000012") is None


def test_documents_payments_and_customers_have_their_own_files(tmp_path):
    erp = FileExportErp(tmp_path)
    doc = ArDocument(
        kind="credit_memo",
        natural_key="CM00000001",
        customer_id="A1",
        date=dt.date(2025, 6, 3),
        currency="USD",
        description="Zuora credit memo",
        lines=(ArLine(description="refund", amount=D("10.00"), account="40000"),),
        applies_to=(Application(natural_key="INV1", amount=D("10.00")),),
    )
    pay = Payment(
        kind="refund",
        natural_key="R-00000001",
        customer_id="A1",
        date=dt.date(2025, 6, 4),
        amount=D("5.50"),
        currency="USD",
        payment_method="CC",
        cash_account="10200",
        description="Zuora refund",
    )
    customer = Customer(
        customer_id="A1", name="Acme, Inc.", currency="USD", zuora_account_id="8a", zuora_account_number="A1"
    )

    assert erp.create_document(doc).key == "2025-06/ar_documents/CM00000001"
    assert erp.create_payment(pay).key == "2025-06/payments/R-00000001"
    assert erp.upsert_customer(customer).key == "customers/customers/A1"
    assert erp.find_document("credit_memo", "CM00000001", customer_id="A1") is not None
    assert erp.find_document("credit_memo", "CM00000001", customer_id="B2") is None

    [doc_row] = read_csv(tmp_path / "2025-06" / "ar_documents.csv")
    assert (doc_row["debit"], doc_row["credit"], doc_row["applies_to"]) == (
        "10.00",
        "0",
        "invoice:INV1=10.00",
    )
    [pay_row] = read_jsonl(tmp_path / "2025-06" / "payments.jsonl")
    assert (pay_row["debit"], pay_row["credit"], pay_row["cash_account"]) == ("0", "5.50", "10200")
    assert read_csv(tmp_path / "customers" / "customers.csv")[0]["name"] == "Acme, Inc."
    manifest = json.loads((tmp_path / "2025-06" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "ar_documents.csv",
        "ar_documents.jsonl",
        "payments.csv",
        "payments.jsonl",
    ]

    changed = Customer(
        customer_id="A1", name="Acme Corp", currency="USD", zuora_account_id="8a", zuora_account_number="A1"
    )
    erp.upsert_customer(changed)
    assert [r["name"] for r in read_jsonl(tmp_path / "customers" / "customers.jsonl")] == ["Acme Corp"]


@pytest.mark.parametrize("kind", ["journal", "credit_memo", "refund", "customer"])
def test_render_is_the_rows_the_export_writes(tmp_path, kind):
    erp = FileExportErp(tmp_path / "export")
    document: Journal | ArDocument | Payment | Customer
    if kind == "journal":
        document, write, path = journal(), erp.post_journal, "2025-06/journal"
    elif kind == "credit_memo":
        document = ArDocument(
            kind="credit_memo",
            natural_key="CM00000001",
            customer_id="A1",
            date=dt.date(2025, 6, 3),
            currency="USD",
            description="Zuora credit memo",
            lines=(ArLine(description="refund", amount=D("10.00"), account="40000"),),
            applies_to=(Application(natural_key="INV1", amount=D("10.00")),),
        )
        write, path = erp.create_document, "2025-06/ar_documents"
    elif kind == "refund":
        document = Payment(
            kind="refund",
            natural_key="R-00000001",
            customer_id="A1",
            date=dt.date(2025, 6, 4),
            amount=D("5.50"),
            currency="USD",
            payment_method="CC",
            cash_account="10200",
            description="Zuora refund",
        )
        write, path = erp.create_payment, "2025-06/payments"
    else:
        document = Customer(
            customer_id="A1",
            name="Acme, Inc.",
            currency="USD",
            zuora_account_id="8a",
            zuora_account_number="A1",
        )
        write, path = erp.upsert_customer, "customers/customers"

    rendered = erp.render(document)
    assert not (tmp_path / "export").exists()  # rendering writes nothing
    write(document)

    assert (rendered.target, rendered.method, rendered.path, rendered.unresolved) == (
        "file",
        "export",
        path,
        (),
    )
    stem = path.rsplit("/", 1)[1]
    assert rendered.operation == f"export {path}.csv and {stem}.jsonl rows"
    assert rendered.body == read_jsonl(tmp_path / "export" / f"{path}.jsonl")
    assert rendered.body == read_csv(tmp_path / "export" / f"{path}.csv")


def test_an_application_made_after_its_payment_is_one_row_written_once(tmp_path):
    erp = FileExportErp(tmp_path)
    invoice = ArDocument(
        kind="invoice",
        natural_key="INV00000007",
        customer_id="A1",
        date=dt.date(2025, 7, 1),
        currency="USD",
        description="Zuora invoice",
        lines=(ArLine(description="plan", amount=D("80.00"), account="40000"),),
    )
    pay = Payment(
        kind="payment",
        natural_key="P-00000007",
        customer_id="A1",
        date=dt.date(2025, 6, 28),
        amount=D("80.00"),
        currency="USD",
        payment_method="CC",
        cash_account="10200",
        description="Zuora payment",
    )
    paid = erp.create_payment(pay)  # exported before the invoice it pays
    application = Application(natural_key="INV00000007", amount=D("80.00"))
    with pytest.raises(NotFound, match="INV00000007 was not exported"):
        erp.apply_later(paid, application, "A1")
    target = erp.create_document(invoice)

    assert erp.apply_later(paid, application, "A1") == (target, True)
    assert erp.apply_later(paid, application, "A1") == (target, False)
    rows = read_csv(tmp_path / "2025-06" / "applications.csv")
    assert rows == [
        {
            "natural_key": "P-00000007>invoice:INV00000007",
            "kind": "payment",
            "document": "P-00000007",
            "customer_id": "A1",
            "target_kind": "invoice",
            "target": "INV00000007",
            "amount": "80.00",
        }
    ]
    manifest = json.loads((tmp_path / "2025-06" / "manifest.json").read_text())
    assert manifest["files"]["applications.csv"] == {"lines": 1, "entries": 1}


def test_release_marks_released_without_writing(tmp_path):
    ref = ErpRef("journal", "2025-06/journal/JE-1", False)
    assert FileExportErp(tmp_path).release(ref) == ErpRef("journal", "2025-06/journal/JE-1", True)
    assert list(tmp_path.iterdir()) == []


def test_journal_totals_read_back_from_the_files(tmp_path):
    erp = FileExportErp(tmp_path)
    erp.post_journal(journal("JE-00000001", amount="10.00"))
    erp.post_journal(journal("JE-00000002", amount="20.00", currency="EUR"))
    erp.post_journal(journal("JE-00000003", amount="5.00", period="2025-07"))

    assert erp.journal_totals(period="2025-06") == {
        ("11000", "USD"): Totals(D("10.00"), D(0)),
        ("40000", "USD"): Totals(D(0), D("9.75")),
        ("24000", "USD"): Totals(D(0), D("0.25")),
        ("11000", "EUR"): Totals(D("20.00"), D(0)),
        ("40000", "EUR"): Totals(D(0), D("19.75")),
        ("24000", "EUR"): Totals(D(0), D("0.25")),
    }
    assert erp.journal_totals(natural_keys=["JE-00000001", "JE-00000003", "JE-404"]) == {
        ("11000", "USD"): Totals(D("15.00"), D(0)),
        ("40000", "USD"): Totals(D(0), D("14.50")),
        ("24000", "USD"): Totals(D(0), D("0.50")),
    }
    with pytest.raises(ValueError):
        erp.journal_totals()


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "journal.csv"
    target.write_bytes(b"old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(target, b"new\n")
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["journal.csv"]  # no temp file left behind


def test_disk_errors_become_transient(tmp_path, monkeypatch):
    erp = FileExportErp(tmp_path)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(Transient) as info:
        erp.post_journal(journal())
    assert info.value.api == "file"


def test_check_reference_data_reports_an_unwritable_directory(tmp_path):
    assert FileExportErp(tmp_path / "out").check_reference_data(["11000"], ["USD"], "2025-06") == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    [problem] = FileExportErp(blocker / "out").check_reference_data([], [])
    assert problem.startswith(f"export directory {blocker / 'out'} is not writable")


# Each writer is a fresh interpreter (not a fork of this multi-threaded test process, which can
# inherit a held lock and hang): it exports five journals shaped like journal() above.
_WRITER = """
import datetime as dt, sys
from decimal import Decimal as D
from shared.erp.base import Journal, JournalLine
from shared.erp.file_export import FileExportErp

directory, worker = sys.argv[1], int(sys.argv[2])
erp = FileExportErp(directory)
for i in range(5):
    number, amount = f"JE-{worker:04d}{i:04d}", D(f"{worker + 1}.{i}0")
    erp.post_journal(Journal(
        natural_key=number, date=dt.date(2025, 6, 28), post_period="2025-06", currency="USD",
        ledger="ACTUAL", branch="HQ", description=f"{number} Invoice Item",
        lines=(
            JournalLine(account="11000", subaccount="000000", debit=amount, description="Accounts Receivable"),
            JournalLine(account="40000", subaccount="000000", credit=amount - D("0.25"), description="Sales Revenue"),
            JournalLine(account="24000", credit=D("0.25"), description="Sales Tax Payable"),
        ),
    ))
"""


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path):
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(w)], stderr=subprocess.PIPE)
        for w in range(4)
    ]
    for writer in writers:
        _out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()

    rows = read_jsonl(tmp_path / "2025-06" / "journal.jsonl")
    assert len(rows) == 4 * 5 * 3
    assert len({r["natural_key"] for r in rows}) == 20
    assert len(read_csv(tmp_path / "2025-06" / "journal.csv")) == 60
    manifest = json.loads((tmp_path / "2025-06" / "manifest.json").read_text())
    debit = sum(D(r["debit"]) for r in rows)
    assert manifest["files"]["journal.csv"] == {
        "lines": 60,
        "entries": 20,
        "debit": str(debit),
        "credit": str(debit),
    }
    assert not [p for p in (tmp_path / "2025-06").iterdir() if p.name.endswith(".tmp")]
