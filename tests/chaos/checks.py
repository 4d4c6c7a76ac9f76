"""What must hold after a chaos run, read from the sandboxes' own state (Zuora's records and
Acumatica's documents), never from the ledger's word. Each check returns a list of problems, each
one sentence naming the record, so a failing run says exactly what broke.

- :func:`document_problems`: every Zuora document the sync moves is in Acumatica exactly once,
  for Zuora's amount; nothing else is there; every AR document's open balance is Zuora's (so the
  payments, refunds and credit memos were applied for what Zuora applied); each payment's and
  refund's applications are Zuora's, document by document; every customer once.
- :func:`mark_problems`: every such Zuora record is marked ``TransferredToAccounting=Yes``.
- :func:`journal_problems`: every summary journal entry of the close's journal run is one GL
  batch with the entry's lines, and is marked in Zuora.
- :func:`refused_callout_problems`: no Zuora request named an object only a refused callout named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from shared.mapping import journal_from_summary_entry, load_mapping
from tests.chaos.stack import Sandbox
from tests.integration.item_level.support import (
    NUMBER,
    SYNCED,
    Zuora,
    erp_documents,
    expected_documents,
    unmarked,
)

# The ERP document type of each Zuora table the sync moves, and the Zuora amount field.
ERP_TYPE = {
    "invoices": ("Invoice", "Invoice", "Amount"),
    "debit-memos": ("Invoice", "Debit Memo", "TotalAmount"),
    "credit-memos": ("Invoice", "Credit Memo", "TotalAmount"),
    "payments": ("Payment", "Payment", "Amount"),
    "refunds": ("Payment", "Refund", "Amount"),
}
# Zuora application tables: (table, the applied document's id field, amount field, the targets'
# id fields with their ERP document types).
APPLICATIONS = {
    "payments": ("payment-applications", "PaymentId", "ApplyAmount",
                 (("InvoiceId", "invoices"), ("DebitMemoId", "debit-memos"))),
    "refunds": ("refund-applications", "RefundId", "ApplyAmount",
                (("PaymentId", "payments"), ("CreditMemoId", "credit-memos"))),
}  # fmt: skip


def money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


class ErpState:
    """Acumatica's records read once from its control plane (``erp_documents`` reads ``state``)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._cache = {entity: sandbox.state(entity) for entity in ("Invoice", "Payment", "Customer")}
        self._cache["JournalTransaction"] = sandbox.state("JournalTransaction")

    def state(self, entity: str) -> list[dict[str, Any]]:
        return self._cache[entity]


def _key_field(entity: str) -> str:
    return "CustomerOrder" if entity == "Invoice" else "PaymentRef"


def document_problems(zuora: Zuora, erp: ErpState) -> tuple[list[str], dict[str, int]]:
    """Problems with the item-level documents, and figures: documents expected, duplicates, lost."""
    problems: list[str] = []
    expected = expected_documents(zuora)
    found = erp_documents(erp)
    duplicates = {key: n for key, n in found.items() if n > 1}
    lost = sorted(key for key in expected if found.get(key, 0) == 0)
    extra = sorted(key for key in found if key not in expected)
    problems += [
        f"{kind} {number} is in Acumatica {n} times" for (kind, number), n in sorted(duplicates.items())
    ]
    problems += [f"{kind} {number} never reached Acumatica" for kind, number in lost]
    problems += [f"Acumatica has {kind} {number}, which Zuora does not sync" for kind, number in extra]

    rows = {table: zuora.rows(table) for table in SYNCED}
    by_id = {table: {r["Id"]: r for r in table_rows} for table, table_rows in rows.items()}
    erp_by_key: dict[tuple[str, str], dict[str, Any]] = {}
    erp_by_ref: dict[tuple[str, str], str] = {}  # (ERP type, ReferenceNbr) -> Zuora number
    for entity in ("Invoice", "Payment"):
        for row in erp.state(entity):
            number = row.get(_key_field(entity))
            if number is None:
                continue  # a credit memo seen through the Payment entity
            erp_by_key[(str(row["Type"]), str(number))] = row
            erp_by_ref[(str(row["Type"]), str(row["ReferenceNbr"]))] = str(number)

    for table, (entity, erp_type, amount_field) in ERP_TYPE.items():
        status = SYNCED[table][0]
        for row in rows[table]:
            if row.get("Status") != status:
                continue
            number = str(row[NUMBER[table]])
            document = erp_by_key.get((erp_type, number))
            if document is None:
                continue  # reported as lost above
            erp_amount = document.get("Amount" if entity == "Invoice" else "PaymentAmount")
            if money(erp_amount) != money(row.get(amount_field)):
                problems.append(
                    f"{erp_type} {number}: Acumatica has {money(erp_amount)}, Zuora {money(row.get(amount_field))}"
                )
            if entity == "Invoice" and money(document.get("Balance")) != money(row.get("Balance")):
                problems.append(
                    f"{erp_type} {number} is open for {money(document.get('Balance'))} in Acumatica, "
                    f"{money(row.get('Balance'))} in Zuora (an application is missing or wrong)"
                )

    for table, (app_table, owner_field, amount_field, targets) in APPLICATIONS.items():
        _, erp_type, _ = ERP_TYPE[table]
        wanted: dict[str, Counter[tuple[str, str, Decimal]]] = {}
        for app in zuora.rows(app_table):
            owner = by_id[table].get(app[owner_field])
            if owner is None or owner.get("Status") != SYNCED[table][0] or money(app[amount_field]) <= 0:
                continue
            for field, target_table in targets:
                target = by_id[target_table].get(app.get(field) or "")
                if target is not None:
                    label = ERP_TYPE[target_table][1]
                    wanted.setdefault(str(owner[NUMBER[table]]), Counter())[
                        (label, str(target[NUMBER[target_table]]), money(app[amount_field]))
                    ] += 1
        for (doc_type, number), document in erp_by_key.items():
            if doc_type != erp_type:
                continue
            got: Counter[tuple[str, str, Decimal]] = Counter()
            for line in document.get("ApplicationHistory") or []:
                target_type = str(line.get("DisplayDocType"))
                target_number = erp_by_ref.get((target_type, str(line.get("DisplayRefNbr"))), "?")
                got[(target_type, target_number, money(line.get("AmountPaid")))] += 1
            if got != wanted.get(number, Counter()):
                problems.append(
                    f"{erp_type} {number} is applied in Acumatica to {_applications(got)}, "
                    f"in Zuora to {_applications(wanted.get(number, Counter()))}"
                )

    customers = Counter(str(row.get("CustomerID")) for row in erp.state("Customer"))
    problems += [f"customer {c} is in Acumatica {n} times" for c, n in sorted(customers.items()) if n > 1]
    figures = {
        "documents": len(expected),
        "erp_duplicates": sum(n - 1 for n in duplicates.values())
        + sum(n - 1 for n in customers.values() if n > 1),
        "lost": len(lost),
    }
    return problems, figures


def _applications(apps: Mapping[tuple[str, str, Decimal], int]) -> str:
    if not apps:
        return "nothing"
    return ", ".join(
        f"{t} {n} for {a}" + (f" x{c}" if c > 1 else "") for (t, n, a), c in sorted(apps.items())
    )


def mark_problems(zuora: Zuora) -> list[str]:
    return [f"{number} is not marked TransferredToAccounting=Yes in Zuora" for number in unmarked(zuora)]


def journal_problems(zuora: Zuora, erp: ErpState, mapping_file: str) -> tuple[list[str], int]:
    """Problems with the close's summary journal entries (the tenant's only journal run made them
    all); and how many entries the run made."""
    mapping = load_mapping(mapping_file)
    runs = zuora.rows("journal-runs")
    if len(runs) != 1:
        return [f"Zuora has {len(runs)} journal runs, not one: {[r.get('number') for r in runs]}"], 0
    entries = zuora.rows("journal-entries")
    batches = erp.state("JournalTransaction")
    problems: list[str] = []
    if not entries or len(entries) != runs[0].get("totalJournalEntryCount"):
        problems.append(f"journal run {runs[0].get('number')} lists {runs[0].get('totalJournalEntryCount')} "
                        f"entries, Zuora holds {len(entries)}")  # fmt: skip
    for entry in entries:
        number = str(entry["number"])
        mine = [b for b in batches if str(b.get("Description", "")).split(" ", 1)[0] == number]
        if len(mine) != 1:
            problems.append(f"journal entry {number} is {len(mine)} GL batches in Acumatica")
        else:
            lines = sorted(
                (str(d["Account"]), money(d.get("DebitAmount")), money(d.get("CreditAmount")))
                for d in mine[0]["Details"]
            )
            wanted = sorted(
                (line.account, money(line.debit), money(line.credit))
                for line in journal_from_summary_entry(entry, mapping).lines
            )
            if lines != wanted or mine[0].get("CurrencyID") != entry.get("currency"):
                problems.append(f"journal entry {number}'s GL batch is {lines}, Zuora's entry {wanted}")
        if entry.get("transferredToAccounting") != "Yes":
            problems.append(
                f"journal entry {number} is {entry.get('transferredToAccounting')} in Zuora, not Yes"
            )
    numbers = {str(e["number"]) for e in entries}
    strays = [
        b["Description"] for b in batches if str(b.get("Description", "")).split(" ", 1)[0] not in numbers
    ]
    problems += [f"Acumatica has a GL batch no journal entry of the run explains: {d}" for d in strays]
    return problems, len(entries)


def refused_callout_problems(requests: Iterable[str], refused_ids: Iterable[str]) -> tuple[list[str], int]:
    """Each API request Zuora served that names an object only a refused callout named; and how
    many requests were searched."""
    lines = list(requests)
    wanted = set(refused_ids)
    problems = [
        f"Zuora was asked about {object_id}, named only by a refused callout: {line[:200]}"
        for line in lines
        for object_id in wanted
        if object_id in line
    ]
    return problems, len(lines)
