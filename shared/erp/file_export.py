"""A general ledger without an API: documents and journal entries exported as files.

Layout under ``LEDGERBRIDGE_GL_EXPORT_DIR``::

    2025-06/journal.csv  journal.jsonl        one row per journal line
    2025-06/ar_documents.csv  .jsonl          one row per invoice / memo line
    2025-06/payments.csv  .jsonl              one row per payment or refund
    2025-06/applications.csv  .jsonl          one row per application made after its document
    2025-06/manifest.json                     rows, entries, debit and credit totals per file
    customers/customers.csv  .jsonl  manifest.json   customers (they belong to no period)
    .index/<kind>/<natural key>.json          where each natural key was exported
    .lock                                     the writers' lock

The CSV and the JSON Lines file of a kind hold the same rows; amounts are exact decimal strings.
Every row carries its document's ``natural_key``. Exporting a natural key again *replaces* that
document's rows (in its period, or moved from the period it was in before), so a re-export
never duplicates a line, even after a crash between writing a period and its index; an
identical re-export writes nothing.

Every write is atomic (a temp file in the same directory, flush, fsync, ``os.replace``, fsync of
the directory) and all writers - threads or worker processes - serialise on an ``fcntl`` lock of
``.lock``, so readers only ever see complete files. A period's file is rewritten whole on each
export: the cost grows with the period's size, which suits summary journals and modest
item-level volumes.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.erp.base import (
    ZERO,
    AccountTotals,
    Application,
    AppliedRef,
    ArDocument,
    Customer,
    Document,
    ErpRef,
    Journal,
    Payment,
    RefKind,
    RenderedRequest,
    Totals,
    add_line_totals,
    period_of,
)
from shared.errors import NotFound, Transient

API = "file"

JOURNAL_COLUMNS = (
    "natural_key", "line", "date", "post_period", "currency", "ledger", "branch", "description",
    "account", "subaccount", "debit", "credit", "line_description",
)  # fmt: skip
AR_COLUMNS = (
    "natural_key", "kind", "line", "customer_id", "date", "due_date", "post_period", "currency",
    "description", "branch", "account", "subaccount", "line_description", "quantity", "unit_price",
    "amount", "debit", "credit", "applies_to",
)  # fmt: skip
PAYMENT_COLUMNS = (
    "natural_key", "kind", "customer_id", "date", "post_period", "currency", "payment_method",
    "cash_account", "description", "amount", "debit", "credit", "applications",
)  # fmt: skip
# Applications made after their document (a payment exported before the invoice it pays).
APPLICATION_COLUMNS = ("natural_key", "kind", "document", "customer_id", "target_kind", "target", "amount")
CUSTOMER_COLUMNS = (
    "natural_key", "customer_id", "name", "currency", "email", "customer_class", "zuora_account_id",
    "zuora_account_number", "address_line1", "address_line2", "city", "state", "postal_code", "country",
)  # fmt: skip

COLUMNS: dict[str, tuple[str, ...]] = {
    "journal": JOURNAL_COLUMNS,
    "ar_documents": AR_COLUMNS,
    "payments": PAYMENT_COLUMNS,
    "customers": CUSTOMER_COLUMNS,
    "applications": APPLICATION_COLUMNS,
}
STEM_OF_KIND: dict[str, str] = {
    "journal": "journal",
    "invoice": "ar_documents",
    "debit_memo": "ar_documents",
    "credit_memo": "ar_documents",
    "payment": "payments",
    "refund": "payments",
    "customer": "customers",
}
CUSTOMERS_DIR = "customers"

Row = dict[str, str]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _applications(apps: Iterable[Any]) -> str:
    return ";".join(f"{a.kind}:{a.natural_key}={_text(a.amount)}" for a in apps)


def journal_rows(journal: Journal) -> list[Row]:
    """One row per journal line."""
    return [
        {
            "natural_key": journal.natural_key,
            "line": str(i),
            "date": _text(journal.date),
            "post_period": journal.period,
            "currency": journal.currency,
            "ledger": journal.ledger,
            "branch": journal.branch,
            "description": journal.description,
            "account": line.account,
            "subaccount": _text(line.subaccount),
            "debit": _text(line.debit),
            "credit": _text(line.credit),
            "line_description": line.description,
        }
        for i, line in enumerate(journal.lines, start=1)
    ]


def document_rows(doc: ArDocument) -> list[Row]:
    """One row per document line. The line account is credited by an invoice or debit memo and
    debited by a credit memo (the receivable side is the customer's)."""
    rows = []
    for i, line in enumerate(doc.lines, start=1):
        credit_side = doc.kind != "credit_memo"
        rows.append(
            {
                "natural_key": doc.natural_key,
                "kind": doc.kind,
                "line": str(i),
                "customer_id": doc.customer_id,
                "date": _text(doc.date),
                "due_date": _text(doc.due_date),
                "post_period": doc.period,
                "currency": doc.currency,
                "description": doc.description,
                "branch": _text(line.branch),
                "account": line.account,
                "subaccount": _text(line.subaccount),
                "line_description": line.description,
                "quantity": _text(line.quantity),
                "unit_price": _text(line.unit_price),
                "amount": _text(line.amount),
                "debit": _text(ZERO if credit_side else line.amount),
                "credit": _text(line.amount if credit_side else ZERO),
                "applies_to": _applications(doc.applies_to),
            }
        )
    return rows


def payment_rows(payment: Payment) -> list[Row]:
    """One row per payment (cash debited) or refund (cash credited)."""
    is_payment = payment.kind == "payment"
    return [
        {
            "natural_key": payment.natural_key,
            "kind": payment.kind,
            "customer_id": payment.customer_id,
            "date": _text(payment.date),
            "post_period": payment.period,
            "currency": payment.currency,
            "payment_method": payment.payment_method,
            "cash_account": payment.cash_account,
            "description": payment.description,
            "amount": _text(payment.amount),
            "debit": _text(payment.amount if is_payment else ZERO),
            "credit": _text(ZERO if is_payment else payment.amount),
            "applications": _applications(payment.applications),
        }
    ]


def customer_rows(customer: Customer) -> list[Row]:
    row = {column: _text(getattr(customer, column, None)) for column in CUSTOMER_COLUMNS}
    row["natural_key"] = customer.customer_id
    return [row]


def export_of(document: Document) -> tuple[RefKind, str, str, list[Row]]:
    """(kind, natural key, folder, rows) of the export that writes ``document``: customers go to
    ``customers/``, everything else to its period's folder."""
    if isinstance(document, Customer):
        return "customer", document.customer_id, CUSTOMERS_DIR, customer_rows(document)
    if isinstance(document, ArDocument):
        return document.kind, document.natural_key, document.period, document_rows(document)
    if isinstance(document, Payment):
        return document.kind, document.natural_key, document.period, payment_rows(document)
    return "journal", document.natural_key, document.period, journal_rows(document)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a part:
    a temp file in the same directory, flushed and fsynced, renamed over, and the directory
    fsynced so the rename survives a crash."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _csv_bytes(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _jsonl_bytes(rows: Sequence[Row]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows).encode("utf-8")


def _digest(rows: Sequence[Row]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def file_stats(rows: Sequence[Row]) -> dict[str, Any]:
    """A manifest entry: row and entry counts, and exact debit/credit totals as strings."""
    debit = sum((Decimal(r["debit"]) for r in rows if r.get("debit")), ZERO)
    credit = sum((Decimal(r["credit"]) for r in rows if r.get("credit")), ZERO)
    entry: dict[str, Any] = {"lines": len(rows), "entries": len({r["natural_key"] for r in rows})}
    if rows and "debit" in rows[0]:
        entry |= {"debit": _text(debit), "credit": _text(credit)}
    return entry


class FileExportErp:
    """The :class:`~shared.erp.base.ErpTarget` writing CSV and JSON Lines files (module docstring).

    Exported documents are final, so every reference is ``released``. Accounts and currencies
    cannot be checked against a chart of accounts here; :meth:`check_reference_data` checks that
    the export directory is writable.
    """

    def __init__(self, export_dir: Path | str) -> None:
        self.export_dir = Path(export_dir)

    # -- writes ----------------------------------------------------------------------------------

    def upsert_customer(self, customer: Customer) -> ErpRef:
        return self._export(*export_of(customer))

    def create_document(self, doc: ArDocument) -> ErpRef:
        return self._export(*export_of(doc))

    def create_payment(self, payment: Payment) -> ErpRef:
        return self._export(*export_of(payment))

    def post_journal(self, journal: Journal) -> ErpRef:
        return self._export(*export_of(journal))

    def render(self, document: Document, *, applied: AppliedRef | None = None) -> RenderedRequest:
        """The export the write of ``document`` makes: the rows it puts in place of the document's
        rows in ``<folder>/<stem>.csv`` and ``.jsonl`` (the rows name applied documents by natural
        key, so ``applied`` is not needed). Nothing is written or read."""
        kind, _, folder, rows = export_of(document)
        stem = STEM_OF_KIND[kind]
        return RenderedRequest(
            API, "export", f"{folder}/{stem}", rows, f"export {folder}/{stem}.csv and {stem}.jsonl rows"
        )

    def release(self, ref: ErpRef) -> ErpRef:
        return ref if ref.released else ErpRef(ref.kind, ref.key, True)

    def apply_later(self, ref: ErpRef, application: Application, customer_id: str) -> tuple[ErpRef, bool]:
        """An application made after its document: one row of ``<period>/applications.csv`` (and
        ``.jsonl``) in the applying document's period, keyed ``<document>><kind>:<target>``;
        written once (a second call finds it in the index)."""
        target = self.find_document(application.kind, application.natural_key, customer_id)
        if target is None:
            raise NotFound(f"{application.kind} {application.natural_key} was not exported", api=API)
        folder, _, rest = ref.key.partition("/")
        document = rest.partition("/")[2]
        if not document:
            raise ValueError(f"not an export reference: {ref.key!r}")
        natural_key = f"{document}>{application.kind}:{application.natural_key}"
        row = {
            "natural_key": natural_key,
            "kind": ref.kind,
            "document": document,
            "customer_id": customer_id,
            "target_kind": application.kind,
            "target": application.natural_key,
            "amount": _text(application.amount),
        }
        try:
            with self._locked():
                if self._read_index("application", natural_key) is not None:
                    return target, False
                self._write_rows(folder, "applications", natural_key, [row])
                path = self._index_path("application", natural_key)
                path.parent.mkdir(parents=True, exist_ok=True)
                index = {
                    "ref": f"{folder}/applications/{natural_key}",
                    "period": folder,
                    "customer_id": customer_id,
                }
                atomic_write(path, json.dumps(index, sort_keys=True).encode())
        except OSError as exc:
            raise Transient(f"could not export the application {natural_key}: {exc}", api=API) from exc
        return target, True

    # -- reads -----------------------------------------------------------------------------------

    def find_document(self, kind: RefKind, natural_key: str, customer_id: str | None = None) -> ErpRef | None:
        entry = self._read_index(kind, natural_key)
        if entry is None:
            return None
        if customer_id is not None and entry.get("customer_id") not in (None, "", customer_id):
            return None
        return ErpRef(kind, str(entry["ref"]), True)

    def journal_totals(
        self, *, natural_keys: Sequence[str] | None = None, period: dt.date | str | None = None
    ) -> AccountTotals:
        if (natural_keys is None) == (period is None):
            raise ValueError("give natural_keys or period, not both")
        rows: list[Row] = []
        if period is not None:
            rows = self._read_rows(period_of(period), "journal")
        else:
            assert natural_keys is not None
            by_period: dict[str, set[str]] = {}
            for key in natural_keys:
                entry = self._read_index("journal", key)
                if entry is not None:
                    by_period.setdefault(str(entry["period"]), set()).add(key)
            for folder, keys in sorted(by_period.items()):
                rows += [r for r in self._read_rows(folder, "journal") if r["natural_key"] in keys]
        totals: dict[tuple[str, str], Totals] = {}
        for row in rows:
            line = Totals(Decimal(row["debit"] or "0"), Decimal(row["credit"] or "0"))
            add_line_totals(totals, row["account"], row["currency"], line)
        return totals

    def check_reference_data(
        self, accounts: Iterable[str], currencies: Iterable[str], period: dt.date | str | None = None
    ) -> list[str]:
        try:
            self.export_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.export_dir / ".write-check", b"ok\n")
            (self.export_dir / ".write-check").unlink()
        except OSError as exc:
            return [f"export directory {self.export_dir} is not writable: {exc.strerror or exc}"]
        return []

    def close(self) -> None:
        """Nothing is held between calls."""

    # -- the export ------------------------------------------------------------------------------

    def _export(self, kind: RefKind, natural_key: str, folder: str, rows: list[Row]) -> ErpRef:
        stem = STEM_OF_KIND[kind]
        ref = ErpRef(kind, f"{folder}/{stem}/{natural_key}", True)
        digest = _digest(rows)
        try:
            with self._locked():
                entry = self._read_index(kind, natural_key)
                if entry is not None and entry.get("digest") == digest and entry.get("period") == folder:
                    return ErpRef(kind, str(entry["ref"]), True)
                if entry is not None and entry.get("period") not in (None, folder):
                    # Re-exported into another period (re-dated): move it, never keep two copies.
                    self._write_rows(str(entry["period"]), stem, natural_key, [])
                self._write_rows(folder, stem, natural_key, rows)
                customer_id = rows[0].get("customer_id", "") if rows else ""
                index = {"ref": ref.key, "period": folder, "digest": digest, "customer_id": customer_id}
                path = self._index_path(kind, natural_key)
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, json.dumps(index, sort_keys=True).encode())
        except OSError as exc:
            raise Transient(f"could not export {kind} {natural_key}: {exc}", api=API) from exc
        return ref

    def _write_rows(self, folder: str, stem: str, natural_key: str, rows: list[Row]) -> None:
        """Replace ``natural_key``'s rows in ``folder``'s ``stem`` files and update the manifest."""
        directory = self.export_dir / folder
        directory.mkdir(parents=True, exist_ok=True)
        kept = [r for r in self._read_rows(folder, stem) if r["natural_key"] != natural_key]
        all_rows = kept + rows
        atomic_write(directory / f"{stem}.csv", _csv_bytes(COLUMNS[stem], all_rows))
        atomic_write(directory / f"{stem}.jsonl", _jsonl_bytes(all_rows))
        manifest_path = directory / "manifest.json"
        manifest: dict[str, Any] = {"period": folder, "files": {}}
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text("utf-8"))
        stats = file_stats(all_rows)
        manifest["files"][f"{stem}.csv"] = stats
        manifest["files"][f"{stem}.jsonl"] = dict(stats)
        manifest["files"] = dict(sorted(manifest["files"].items()))
        manifest["updated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        atomic_write(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())

    def _read_rows(self, folder: str, stem: str) -> list[Row]:
        path = self.export_dir / folder / f"{stem}.jsonl"
        if not path.exists():
            return []
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def _index_path(self, kind: str, natural_key: str) -> Path:
        return self.export_dir / ".index" / kind / (quote(natural_key, safe="") + ".json")

    def _read_index(self, kind: str, natural_key: str) -> Mapping[str, Any] | None:
        path = self._index_path(kind, natural_key)
        try:
            data: Mapping[str, Any] = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Transient(
                f"could not read the export index for {kind} {natural_key}: {exc}", api=API
            ) from exc
        return data

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.export_dir.mkdir(parents=True, exist_ok=True)
        with (self.export_dir / ".lock").open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
