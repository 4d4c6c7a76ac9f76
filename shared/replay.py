"""Re-driving records by hand: ``ledgerbridge replay RECORD`` and ``replay --failed``.

A person fixed the cause of a parked or failed record (the mapping file, the account in Zuora,
the ERP's reference data) and wants it posted now, or wants to see what would be sent first.

**Preview** (``--dry-run``, :func:`preview`): read-only. The record is re-fetched from Zuora by id
with the same query the pull and the push use (expanded item lists completed when cut at the page
size, zuora-api.md section 9.3), mapped with the *current* mapping file, and rendered as the exact
request the ERP adapter would send - the Acumatica entity body with its wrapped values
(acumatica-api.md section 3), or the rows the GL file export would write - next to a unified diff
against what the ledger says was sent before (``SyncRecord.posted_payload``, rendered the same
way). Nothing is written: no ledger change, no ERP call (but the ERP natural-key lookup that
``--force`` would make, a read), no Zuora write.

**Replay** (:func:`replay_records`), by state:

==================  ===============================================================================
pending             re-fetched, then posted now (the posting path: one ERP call, guarded by
                    ``posting``)
failed, parked      re-fetched, ``replay`` (back to pending, attempts reset), then posted
posting             posted through the posting path, which looks an in-doubt row up by natural key
                    first (a row inside its posting timeout belongs to another worker: busy)
posted, marked      nothing at all - no Zuora read, no ERP call - unless ``force``: then the ERP is
                    asked by natural key first; found: its reference is recorded and nothing is
                    created; not found, or found voided: the row goes back to pending and is
                    posted again (and marked again in Zuora, which is harmless)
==================  ===============================================================================

Journal entries belong to their close: a failed or parked entry is re-fetched and returned to
pending, and re-running the close (``ledgerbridge close "<period>"``) checks, posts, marks and
reconciles it; ``force`` on a posted entry looks it up in the ERP and posts it again only when it
is missing. A record Zuora no longer has, or no longer in the status the sync posts (an invoice
cancelled after it was parked), is left as it is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from shared.close.journals import journal_payload
from shared.erp.acumatica import (
    APPLICATION_DOC_TYPES,
    AcumaticaErp,
    customer_record,
    document_record,
    journal_record,
    payment_record,
)
from shared.erp.acumatica_wire import wrap
from shared.erp.base import (
    Application,
    ArDocument,
    ArLine,
    Customer,
    ErpRef,
    Journal,
    JournalLine,
    Payment,
    RefKind,
)
from shared.erp.errors import DuplicateDocuments
from shared.erp.file_export import (
    CUSTOMERS_DIR,
    STEM_OF_KIND,
    FileExportErp,
    customer_rows,
    document_rows,
    journal_rows,
    payment_rows,
)
from shared.errors import ApiError, NotFound, Rejected
from shared.exchange import audit_subject
from shared.item_level.context import ItemContext
from shared.item_level.posting import (
    BUSY,
    FAILED_OUTCOME,
    IN_DOUBT,
    MARKED_OUTCOME,
    PARKED_OUTCOME,
    POSTED_OUTCOME,
    SKIPPED,
    WAITING,
    PostOutcome,
    map_document,
    post_records,
)
from shared.item_level.pull import ingest_rows
from shared.item_level.queries import records_by_zuora_ids
from shared.item_level.streams import ACCOUNTS, STREAMS, Stream, for_object_type
from shared.ledger import states
from shared.ledger.db import dumps_json, loads_json
from shared.ledger.errors import IllegalTransition, LedgerError, TransitionConflict
from shared.ledger.models import ObjectType, RecordSource, SyncRecord
from shared.ledger.repo import Ledger
from shared.mapping import (
    MappingError,
    customer_from_account,
    customer_id_of,
    journal_from_summary_entry,
)
from shared.zuora.object_query import MAX_PAGE_SIZE
from shared.zuora.records import get_field, to_decimal

log = logging.getLogger("ledgerbridge.replay")

JE = ObjectType.JOURNAL_ENTRY.value
POSTED_STATES = (states.POSTED, states.MARKED)
VOIDED = "Voided"  # an ERP document status (acumatica-api.md sections 6.2, 6.5)
SUBJECT_RE = re.compile(r"^([a-z_]+):(.+)$")

ErpDocument = Customer | ArDocument | Payment

# What a replay did to one record (ReplayResult.action).
NOTHING = "nothing"  # already posted; no --force
POSTED = "posted"  # posted (or marked: accounts) by this replay
FOUND = "found"  # --force: the ERP has it; its reference is recorded, nothing created
WAITING_ACTION = "waiting"  # back in the posting path, waiting for a dependency
PARKED = "parked"  # parked again (the cause is not fixed)
FAILED = "failed"  # the ERP refused it or was unavailable; retried with backoff
BUSY_ACTION = "busy"  # another worker holds the row
IN_DOUBT_ACTION = "in_doubt"  # the ERP may have it; the in-doubt lookup settles it
TO_CLOSE = "to_close"  # a journal entry back in pending: its close posts it
NOT_IN_ZUORA = "not_in_zuora"
NOT_SYNCED = "not_synced"  # Zuora's status is not the one the sync posts
DUPLICATES = "duplicates"  # the ERP holds more than one candidate: a person must choose
ERROR = "error"

OK_ACTIONS = frozenset({NOTHING, POSTED, FOUND, WAITING_ACTION, TO_CLOSE})
_OUTCOME_ACTIONS = {
    POSTED_OUTCOME: POSTED,
    MARKED_OUTCOME: POSTED,
    WAITING: WAITING_ACTION,
    PARKED_OUTCOME: PARKED,
    FAILED_OUTCOME: FAILED,
    BUSY: BUSY_ACTION,
    IN_DOUBT: IN_DOUBT_ACTION,
    SKIPPED: ERROR,
}


class ReplayError(Exception):
    """The replay cannot start (an unknown record, an ambiguous query): the message says why."""


# -- finding records ------------------------------------------------------------------------------


def label(record: SyncRecord) -> str:
    """``invoice INV00000012`` (or the Zuora id when the record has no number)."""
    return f"{record.object_type} {record.zuora_number or record.zuora_id}"


def resolve(ledger: Ledger, connection: str, query: str) -> list[SyncRecord]:
    """The records ``query`` names: a Zuora id or number, an ERP reference, or an audit subject
    ``<object_type>:<zuora id>`` (as ``explain`` shows it). Empty when the ledger has none."""
    records = ledger.find_records(connection, query)
    match = SUBJECT_RE.match(query)
    if not records and match and match.group(1) in {t.value for t in ObjectType}:
        found = ledger.get_record(connection, match.group(1), match.group(2))
        records = [found] if found is not None else []
    return records


def failed_records(
    ledger: Ledger, connection: str, streams: Sequence[Stream] | None = None
) -> list[SyncRecord]:
    """The connection's failed and parked item-level records (of ``streams``, default all),
    in the order they entered the ledger."""
    chosen = list(streams) if streams else list(STREAMS.values())
    with ledger.session() as session:
        return list(
            session.exec(
                select(SyncRecord)
                .where(
                    SyncRecord.connection == connection,
                    col(SyncRecord.object_type).in_([s.object_type for s in chosen]),
                    col(SyncRecord.state).in_([states.FAILED, states.PARKED]),
                )
                .order_by(col(SyncRecord.id))
            ).all()
        )


def failed_journal_entries(ledger: Ledger, connection: str) -> list[SyncRecord]:
    """Failed or parked journal entries: their close re-drives them, not ``replay --failed``."""
    with ledger.session() as session:
        return list(
            session.exec(
                select(SyncRecord)
                .where(
                    SyncRecord.connection == connection,
                    SyncRecord.object_type == JE,
                    col(SyncRecord.state).in_([states.FAILED, states.PARKED]),
                )
                .order_by(col(SyncRecord.id))
            ).all()
        )


# -- the exact ERP request ------------------------------------------------------------------------


@dataclass(frozen=True)
class ErpRequest:
    """What the ERP adapter would send for a document: ``target`` (``acumatica``, ``file`` or
    ``erp`` for another adapter), the ``operation`` (``PUT Invoice``, ``export 2024-12/ar_documents``)
    and the ``body`` (the wire JSON, or the export rows)."""

    target: str
    operation: str
    body: Any

    def text(self) -> str:
        return pretty(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "operation": self.operation, "body": _jsonable(self.body)}


def pretty(value: Any, indent: int = 0) -> str:
    """Indented JSON with every Decimal written as the exact number it holds (as the Acumatica
    client sends it, acumatica-api.md section 3.4) and dates as ISO strings; key order is kept."""
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        if len(value) == 1 and not isinstance(next(iter(value.values())), Mapping | list | tuple):
            # A wrapped value ({"value": X}, section 3.1) on one line: one field per line to diff.
            key, inner = next(iter(value.items()))
            return f"{{{json.dumps(str(key))}: {pretty(inner)}}}"
        items = [f"{pad}{json.dumps(str(k))}: {pretty(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{end}}}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(f"{pad}{pretty(v, indent + 1)}" for v in value) + f"\n{end}]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dt.date):
        return json.dumps(value.isoformat())
    return json.dumps(str(value), ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    """Plain JSON values (Decimal as its exact string, dates ISO) for ``--json`` output."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def normalise(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload as the ledger stores it (JSON column codec: exact Decimals, ISO dates)."""
    result: dict[str, Any] = loads_json(dumps_json(dict(payload)))
    return result


def erp_target(erp: Any) -> str:
    """Which renderer fits the adapter: ``acumatica``, ``file`` or ``erp`` (any other)."""
    if isinstance(erp, AcumaticaErp):
        return "acumatica"
    if isinstance(erp, FileExportErp):
        return "file"
    return "erp"


def _application_refs(
    ledger: Ledger, connection: str, applications: Iterable[Application], notes: list[str]
) -> list[tuple[str, str, Decimal]]:
    """(DocType, ReferenceNbr, amount) per application, as the Acumatica adapter resolves them -
    here from the ledger's ERP reference of the applied document (the adapter looks the same
    document up in the ERP by natural key when it posts)."""
    resolved = []
    for app in applications:
        nbr = "?"
        for row in ledger.find_records(connection, app.natural_key):
            if row.object_type == app.kind and row.erp_ref and "/" in row.erp_ref:
                nbr = row.erp_ref.split("/", 1)[1]
                break
        if nbr == "?":
            notes.append(
                f"the {app.kind} {app.natural_key} it applies to has no ERP reference in the ledger "
                "(shown as '?'; the adapter looks it up in the ERP when it posts)"
            )
        resolved.append((APPLICATION_DOC_TYPES[app.kind], nbr, app.amount))
    return resolved


def render_document(
    erp: Any, document: ErpDocument | Journal, *, ledger: Ledger, connection: str, notes: list[str]
) -> ErpRequest:
    """The exact request the connection's ERP adapter would make for ``document``."""
    target = erp_target(erp)
    if target == "acumatica":
        if isinstance(document, Customer):
            return ErpRequest(target, "PUT Customer", wrap(customer_record(document)))
        if isinstance(document, ArDocument):
            apps = _application_refs(ledger, connection, document.applies_to, notes)
            return ErpRequest(target, "PUT Invoice", wrap(document_record(document, apps)))
        if isinstance(document, Payment):
            apps = _application_refs(ledger, connection, document.applications, notes)
            return ErpRequest(target, "PUT Payment", wrap(payment_record(document, apps)))
        return ErpRequest(target, "PUT JournalTransaction", wrap(journal_record(document)))
    if target == "file":
        if isinstance(document, Customer):
            rows, kind, folder = customer_rows(document), "customer", CUSTOMERS_DIR
        elif isinstance(document, ArDocument):
            rows, kind, folder = document_rows(document), document.kind, document.period
        elif isinstance(document, Payment):
            rows, kind, folder = payment_rows(document), document.kind, document.period
        else:
            rows, kind, folder = journal_rows(document), "journal", document.period
        stem = STEM_OF_KIND[kind]
        return ErpRequest(target, f"export {folder}/{stem}.csv and {stem}.jsonl rows", rows)
    if isinstance(document, Journal):
        return ErpRequest(target, "post_journal", normalise(journal_payload(document)))
    return ErpRequest(target, _erp_method(document), normalise(dataclasses.asdict(document)))


def _erp_method(document: ErpDocument) -> str:
    if isinstance(document, Customer):
        return "upsert_customer"
    return "create_document" if isinstance(document, ArDocument) else "create_payment"


# -- rebuilding what was sent before --------------------------------------------------------------


def _day(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _required_day(value: Any) -> dt.date:
    day = _day(value)
    if day is None:
        raise ValueError("a date is missing")
    return day


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _required_money(value: Any) -> Decimal:
    amount = _money(value)
    if amount is None:
        raise ValueError("an amount is missing")
    return amount


def _period(value: Any) -> dt.date | str | None:
    if value is None:
        return None
    text = str(value)
    return dt.date.fromisoformat(text[:10]) if len(text) >= 10 else text


def _applications_of(items: Any) -> tuple[Application, ...]:
    return tuple(
        Application(
            natural_key=str(a["natural_key"]),
            amount=_required_money(a["amount"]),
            kind=a.get("kind") or "invoice",
        )
        for a in items or ()
    )


def document_from_payload(payload: Mapping[str, Any]) -> ErpDocument | Journal:
    """The document a ``posted_payload`` describes: the item-level ``{"method", "document",
    "not_applied"}`` or a close's journal (``shared.close.journals.journal_payload``). Raises
    ValueError, KeyError or TypeError for a payload of another shape."""
    if "method" not in payload:
        return Journal(
            natural_key=str(payload["natural_key"]),
            date=_required_day(payload["date"]),
            post_period=str(payload["post_period"]),
            currency=str(payload["currency"]),
            ledger=str(payload["ledger"]),
            branch=str(payload["branch"]),
            description=str(payload.get("description") or ""),
            lines=tuple(
                JournalLine(
                    account=str(line["account"]),
                    subaccount=line.get("subaccount"),
                    debit=_required_money(line.get("debit", 0)),
                    credit=_required_money(line.get("credit", 0)),
                    description=str(line.get("description") or ""),
                )
                for line in payload["lines"]
            ),
        )
    method = payload["method"]
    doc: Mapping[str, Any] = payload["document"]
    if method == "upsert_customer":
        values: dict[str, Any] = {f.name: doc.get(f.name) for f in dataclasses.fields(Customer)}
        return Customer(**values)
    if method == "create_document":
        return ArDocument(
            kind=doc["kind"],
            natural_key=doc["natural_key"],
            customer_id=doc["customer_id"],
            date=_required_day(doc["date"]),
            currency=doc["currency"],
            description=doc["description"],
            lines=tuple(
                ArLine(
                    description=line["description"],
                    amount=_required_money(line["amount"]),
                    account=line["account"],
                    subaccount=line.get("subaccount"),
                    branch=line.get("branch"),
                    quantity=_money(line.get("quantity")) or Decimal(1),
                    unit_price=_money(line.get("unit_price")),
                )
                for line in doc["lines"]
            ),
            due_date=_day(doc.get("due_date")),
            post_period=_period(doc.get("post_period")),
            applies_to=_applications_of(doc.get("applies_to")),
        )
    if method == "create_payment":
        return Payment(
            kind=doc["kind"],
            natural_key=doc["natural_key"],
            customer_id=doc["customer_id"],
            date=_required_day(doc["date"]),
            amount=_required_money(doc["amount"]),
            currency=doc["currency"],
            payment_method=doc["payment_method"],
            cash_account=doc["cash_account"],
            description=doc["description"],
            applications=_applications_of(doc.get("applications")),
        )
    raise ValueError(f"unknown posting method {method!r}")


# -- re-fetching from Zuora -----------------------------------------------------------------------


def _complete_items(ctx: ItemContext, stream: Stream, row: dict[str, Any]) -> None:
    """Replace an item list the expansion may have cut at the page size with the full list
    (section 9.3), whatever the ledger state (a preview of a posted record needs it too)."""
    if stream.items is None or not stream.truncated(row, ctx.zuora.objects.max_page_size):
        return
    items: list[dict[str, Any]] = []
    for page in ctx.zuora.objects.pages(stream.items_query(str(row["id"]))):
        items.extend(page.data)
    row[stream.items.key] = items


def fetch_rows(
    ctx: ItemContext, stream: Stream, zuora_ids: Sequence[str], *, complete: bool = True
) -> dict[str, dict[str, Any]]:
    """These records by id from Zuora, with the stream's expansions and whatever their status
    (the push path's query, at most 99 ids per call), cut item lists completed unless
    ``complete`` is False (``ingest_rows`` completes them itself). Missing ids are absent."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(zuora_ids))
    for start in range(0, len(unique), MAX_PAGE_SIZE):
        chunk = unique[start : start + MAX_PAGE_SIZE]
        for page in ctx.zuora.objects.pages(stream.query_ids(chunk, with_filters=False)):
            for row in page.data:
                zid = str(get_field(row, "id") or "")
                if zid in chunk:
                    found[zid] = dict(row)
    if complete:
        for row in found.values():
            _complete_items(ctx, stream, row)
    return found


def _fetch_entry(ctx: ItemContext, number: str) -> dict[str, Any] | None:
    try:
        return dict(ctx.zuora.journal_entries.get(number).raw)
    except NotFound:
        return None


# -- the preview ----------------------------------------------------------------------------------


@dataclass
class Preview:
    """What ``replay --dry-run`` shows for one record. ``payload`` is what the posting path would
    store as ``posted_payload`` (None when the record would be parked: see ``problem``)."""

    record: SyncRecord
    fetched: bool
    notes: list[str] = field(default_factory=list)
    problem: str | None = None
    payload: dict[str, Any] | None = None
    request: ErpRequest | None = None
    previous: ErpRequest | None = None
    diff: str = ""
    would: str = ""
    erp_found: str | None = None  # --force: the ERP reference found by natural key

    @property
    def changed(self) -> bool:
        return bool(self.diff)

    def as_dict(self) -> dict[str, Any]:
        rec = self.record
        return {
            "record": {
                "id": rec.id,
                "subject": rec.subject,
                "object_type": rec.object_type,
                "zuora_id": rec.zuora_id,
                "number": rec.zuora_number,
                "state": rec.state,
                "erp_ref": rec.erp_ref,
                "last_error": rec.last_error,
            },
            "fetched_from_zuora": self.fetched,
            "notes": list(self.notes),
            "problem": self.problem,
            "payload": _jsonable(self.payload) if self.payload is not None else None,
            "request": self.request.as_dict() if self.request else None,
            "previous_payload": _jsonable(rec.posted_payload) if rec.posted_payload is not None else None,
            "previous_request": self.previous.as_dict() if self.previous else None,
            "diff": self.diff,
            "changed": self.changed,
            "would": self.would,
            "erp_found": self.erp_found,
        }


@dataclass(frozen=True)
class _Plan:
    document: ErpDocument | None
    not_applied: tuple[dict[str, str], ...] = ()
    problem: str | None = None


def _account_row(ctx: ItemContext, account_id: str, notes: list[str]) -> Mapping[str, Any] | None:
    account = ctx.ledger.get_record(ctx.connection, ObjectType.ACCOUNT.value, account_id)
    if account is not None:
        if account.state not in POSTED_STATES:
            notes.append(
                f"its account {account_id} is {account.state} in the ledger"
                + (f" ({account.last_error})" if account.last_error else "")
                + ": posting waits for the account's customer (it is posted first when pending)"
            )
        return account.payload
    fetched = fetch_rows(ctx, ACCOUNTS, [account_id]).get(account_id)
    if fetched is None:
        notes.append(f"its account {account_id} is neither in the ledger nor in Zuora")
    else:
        notes.append(f"its account {account_id} is not in the ledger yet: it is synced first")
    return fetched


def _applications_preview(
    ctx: ItemContext, stream: Stream, row: Mapping[str, Any], notes: list[str]
) -> tuple[list[Application], list[dict[str, str]]]:
    """The applications the posting path would send now, and those it would leave out."""
    targets = stream.application_targets(row)
    by_type: dict[str, list[str]] = defaultdict(list)
    for target, target_id, _ in targets:
        by_type[target.object_type].append(target_id)
    known: dict[tuple[str, str], SyncRecord] = {}
    for object_type, ids in by_type.items():
        for zid, row_of in records_by_zuora_ids(ctx.ledger, ctx.connection, object_type, ids).items():
            known[(object_type, zid)] = row_of
    applied: list[Application] = []
    left_out: list[dict[str, str]] = []
    for target, target_id, raw_amount in targets:
        try:
            amount = to_decimal(raw_amount)
        except ValueError:
            left_out.append({"target": target_id, "reason": f"application amount {raw_amount!r} unreadable"})
            continue
        if amount <= 0:
            continue
        found: SyncRecord | None = known.get((target.object_type, target_id))
        if found is None:
            notes.append(
                f"the {target.object_type} {target_id} it applies to is not in the ledger: posting waits "
                "for it a while, then leaves the application out"
            )
            left_out.append({"target": target_id, "reason": f"{target.object_type} not in the ledger"})
        elif found.state in POSTED_STATES and found.erp_released and found.zuora_number:
            applied.append(Application(natural_key=found.zuora_number, amount=amount, kind=target.kind))
        elif found.state in POSTED_STATES:
            left_out.append({"target": found.zuora_number or target_id, "reason": "not released in the ERP"})
        elif found.state in (states.PENDING, states.POSTING, states.FAILED):
            notes.append(f"{label(found)} (which it applies to) is {found.state}: it is posted first")
            left_out.append(
                {"target": found.zuora_number or target_id, "reason": f"{found.state} in the ledger"}
            )
        else:
            left_out.append(
                {"target": found.zuora_number or target_id, "reason": f"{found.state} in the ledger"}
            )
    return applied, left_out


def _plan(
    ctx: ItemContext, stream: Stream, rec: SyncRecord, row: Mapping[str, Any], notes: list[str]
) -> _Plan:
    """The document the posting path would build from ``row`` with the current mapping, read-only
    (``shared.item_level.posting`` builds the same, after posting what it depends on)."""
    mapping = ctx.mapping
    try:
        if stream.erp_method == "upsert_customer":
            return _Plan(customer_from_account(row, mapping))
        account_id = stream.account_of(row)
        if not account_id:
            return _Plan(None, problem=f"{rec.subject} has no accountId: it cannot be given an ERP customer")
        account = _account_row(ctx, account_id, notes)
        if account is None:
            return _Plan(None, problem=f"the account {account_id} of {rec.subject} is unknown")
        customer_id = customer_id_of(account)
        applications, left_out = _applications_preview(ctx, stream, row, notes)
        document = map_document(
            stream.object_type,
            row,
            mapping,
            customer_id,
            applications,
            code_names=ctx.zuora.accounting_codes.name_of,
        )
        return _Plan(document, tuple(left_out))
    except MappingError as exc:
        return _Plan(None, problem=exc.reason)
    except (ValueError, TypeError) as exc:
        return _Plan(None, problem=f"{rec.subject}: {exc}")


def _payload(stream: Stream, plan: _Plan) -> dict[str, Any]:
    assert plan.document is not None
    return normalise(
        {
            "method": stream.erp_method,
            "document": dataclasses.asdict(plan.document),
            "not_applied": list(plan.not_applied),
        }
    )


def _previous(ctx: ItemContext, rec: SyncRecord, notes: list[str]) -> ErpRequest | None:
    if rec.posted_payload is None:
        return None
    try:
        document = document_from_payload(rec.posted_payload)
    except (KeyError, ValueError, TypeError) as exc:
        notes.append(
            f"the ledger's posted_payload could not be read back as a document ({exc}); diffed as stored"
        )
        return ErpRequest("ledger", "posted_payload", normalise(rec.posted_payload))
    return render_document(ctx.erp, document, ledger=ctx.ledger, connection=ctx.connection, notes=[])


def _diff(rec: SyncRecord, previous: ErpRequest | None, current: ErpRequest | None, payload: Any) -> str:
    if previous is None:
        return ""
    if previous.target == "ledger" or current is None:
        # Compare like with like: the stored payload against the payload the replay would store.
        before, after = pretty(previous.body), pretty(payload) if payload is not None else ""
    else:
        before, after = previous.text(), current.text()
    when = rec.posted_at.isoformat(timespec="seconds") if rec.posted_at else "before"
    lines = difflib.unified_diff(
        before.splitlines(),
        after.splitlines(),
        fromfile=f"sent {when}" + (f" ({rec.erp_ref})" if rec.erp_ref else ""),
        tofile="replay (current Zuora record and mapping)",
        lineterm="",
    )
    return "\n".join(lines)


def _natural_key(ctx: ItemContext, stream: Stream | None, rec: SyncRecord) -> tuple[RefKind, str, str | None]:
    """(ERP kind, natural key, customer) to look the record's document up by."""
    if stream is None:
        return "journal", rec.zuora_number or rec.zuora_id, None
    if stream.erp_method == "upsert_customer":
        return "customer", customer_id_of(rec.payload), None
    if not rec.zuora_number:
        raise MappingError(f"{rec.subject} has no number to look it up by in the ERP")
    customer_id = None
    if rec.account_id:
        account = ctx.ledger.get_record(ctx.connection, ObjectType.ACCOUNT.value, rec.account_id)
        if account is not None and account.state in POSTED_STATES:
            try:
                customer_id = customer_id_of(account.payload)
            except MappingError:
                customer_id = None
    return stream.erp_kind, rec.zuora_number, customer_id


def _lookup(ctx: ItemContext, stream: Stream | None, rec: SyncRecord) -> tuple[ErpRef | None, str]:
    """The ERP's live document carrying the record's natural key, or None with why: not there,
    or there but voided (a voided document is no posting: ``--force`` posts a new one)."""
    kind, key, customer_id = _natural_key(ctx, stream, rec)
    with audit_subject(rec.subject):
        found = ctx.erp.find_document(kind, key, customer_id)
    if found is None:
        return None, f"not in the ERP by natural key {key}"
    if found.status == VOIDED:
        return None, f"the ERP's {found.key} carrying {key} is voided"
    return found, ""


def _would(ctx: ItemContext, stream: Stream | None, rec: SyncRecord, preview: Preview, force: bool) -> str:
    state = rec.state
    if state in POSTED_STATES:
        if not force:
            return (
                f"nothing: already posted as {rec.erp_ref}. With --force the ERP is asked by natural key "
                "first, and the record is posted again only if the ERP does not have it"
            )
        if preview.erp_found:
            return f"--force: the ERP has it as {preview.erp_found}: that reference is recorded, nothing is posted"
        return "--force: the ERP has no live document for it (see the note): it is posted again with the payload above"
    if stream is None:
        if state in (states.FAILED, states.PARKED):
            return (
                f'return it to pending; re-running its close (`ledgerbridge close "{rec.period_name}"`) '
                "checks and posts it"
            )
        return f'nothing here: it is {state}; its close (`ledgerbridge close "{rec.period_name}"`) posts it'
    if preview.problem:
        return f"park it (again): {preview.problem}"
    if state == states.POSTING:
        due = rec.next_attempt_at is None or rec.next_attempt_at <= ctx.now()
        if due and not rec.erp_ref:
            return "it is in doubt: look it up in the ERP by natural key, and post it only if it is missing"
        return "nothing yet: another worker is posting it" + (
            f" (in doubt after {rec.next_attempt_at.isoformat(timespec='seconds')})"
            if rec.next_attempt_at
            else ""
        )
    if state in (states.FAILED, states.PARKED):
        return "return it to pending and post the payload above (one ERP call)"
    return "post the payload above now (one ERP call)"


class _NotFetched:
    pass


NOT_FETCHED = _NotFetched()


def preview(
    ctx: ItemContext,
    rec: SyncRecord,
    *,
    force: bool = False,
    fetched: Mapping[str, Any] | _NotFetched | None = NOT_FETCHED,
) -> Preview:
    """What a replay of ``rec`` would send and do, without changing anything (module docstring).
    ``fetched`` is the record as already re-fetched from Zuora by :func:`fetch_rows` (None: Zuora
    has no such record); by default it is fetched here."""
    stream = for_object_type(rec.object_type)
    result = Preview(record=rec, fetched=False)
    notes = result.notes
    if stream is None and rec.object_type != JE:
        raise ReplayError(f"{rec.subject} is not a record ledgerbridge posts")
    fresh: Mapping[str, Any] | None
    if not isinstance(fetched, _NotFetched):
        fresh = fetched
    elif stream is None:
        fresh = _fetch_entry(ctx, rec.zuora_id)
    else:
        fresh = fetch_rows(ctx, stream, [rec.zuora_id]).get(rec.zuora_id)
    if fresh is None:
        notes.append("not found in Zuora: shown from the ledger's copy of the record")
        source: Mapping[str, Any] = rec.payload
    else:
        result.fetched = True
        source = fresh
        if stream is not None and not stream.is_posted(fresh):
            notes.append(
                f"its status in Zuora is {get_field(fresh, 'status')}, not {stream.posted_status}: "
                "a replay leaves it alone"
            )
    if stream is None:
        try:
            journal = journal_from_summary_entry(source, ctx.mapping)
        except MappingError as exc:
            result.problem = exc.reason
        else:
            result.payload = normalise(journal_payload(journal))
            result.request = render_document(
                ctx.erp, journal, ledger=ctx.ledger, connection=ctx.connection, notes=notes
            )
    else:
        plan = _plan(ctx, stream, rec, source, notes)
        result.problem = plan.problem
        if plan.document is not None:
            result.payload = _payload(stream, plan)
            result.request = render_document(
                ctx.erp, plan.document, ledger=ctx.ledger, connection=ctx.connection, notes=notes
            )
            for item in plan.not_applied:
                notes.append(f"application to {item['target']} left out: {item['reason']}")
    result.previous = _previous(ctx, rec, notes)
    result.diff = _diff(rec, result.previous, result.request, result.payload)
    if force and rec.state in POSTED_STATES:
        try:
            found, why = _lookup(ctx, stream, rec)
        except (DuplicateDocuments, MappingError) as exc:
            notes.append(f"--force lookup: {exc}")
        else:
            result.erp_found = found.key if found else None
            if found is None:
                notes.append(f"--force lookup: {why}")
    result.would = _would(ctx, stream, rec, result, force)
    return result


def preview_many(ctx: ItemContext, records: Sequence[SyncRecord], *, force: bool = False) -> list[Preview]:
    """:func:`preview` for many records, re-fetching each stream's records 99 per Zuora call."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    by_stream: dict[str, list[str]] = defaultdict(list)
    for rec in records:
        if for_object_type(rec.object_type) is not None:
            by_stream[rec.object_type].append(rec.zuora_id)
    for object_type, ids in by_stream.items():
        stream = for_object_type(object_type)
        assert stream is not None
        for zid, row in fetch_rows(ctx, stream, ids).items():
            rows[(object_type, zid)] = row
    result = []
    for rec in records:
        if for_object_type(rec.object_type) is None:
            result.append(preview(ctx, rec, force=force))
        else:
            result.append(preview(ctx, rec, force=force, fetched=rows.get((rec.object_type, rec.zuora_id))))
    return result


# -- the replay -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayResult:
    """What the replay did to one record. ``ok`` is False when the record needs a person."""

    record_id: int
    subject: str
    label: str
    before: str
    after: str
    action: str
    detail: str | None = None
    erp_ref: str | None = None

    @property
    def ok(self) -> bool:
        return self.action in OK_ACTIONS

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "subject": self.subject,
            "label": self.label,
            "state_before": self.before,
            "state_after": self.after,
            "action": self.action,
            "detail": self.detail,
            "erp_ref": self.erp_ref,
            "ok": self.ok,
        }


def _result(
    ctx: ItemContext, rec: SyncRecord, action: str, detail: str | None = None, erp_ref: str | None = None
) -> ReplayResult:
    assert rec.id is not None
    now = ctx.ledger.get_record_by_id(rec.id)
    return ReplayResult(
        record_id=rec.id,
        subject=rec.subject,
        label=label(rec),
        before=rec.state,
        after=now.state if now is not None else rec.state,
        action=action,
        detail=detail,
        erp_ref=erp_ref if erp_ref is not None else (now.erp_ref if now is not None else None),
    )


def _change(ctx: ItemContext, change: Any) -> bool:
    """Run one state change in its own transaction; False when the row changed meanwhile."""
    try:
        with ctx.ledger.session() as session:
            change(session)
    except (TransitionConflict, IllegalTransition) as exc:
        log.info("record changed underneath the replay: %s", exc)
        return False
    return True


def _note(ctx: ItemContext, rec: SyncRecord, message: str) -> None:
    ctx.ledger.note(rec.subject, message, connection=ctx.connection)


def _record_found(
    ctx: ItemContext, stream: Stream | None, rec: SyncRecord, found: ErpRef, reason: str
) -> ReplayResult:
    """--force and the ERP has the document: record its reference; nothing is created."""
    assert rec.id is not None
    record_id = rec.id
    if found.key == rec.erp_ref:
        _note(ctx, rec, f"replay --force ({reason}): the ERP has it as {found.key}; nothing posted")
        return _result(ctx, rec, FOUND, f"the ERP has it as {found.key}; nothing posted", found.key)
    was_marked = rec.state == states.MARKED
    marks = stream.marks if stream is not None else True

    def record(session: Session) -> None:
        states.begin_posting(session, record_id, force=True, now=ctx.now())
        states.resume_in_doubt(
            session, record_id, found_erp_ref=found.key, released=found.released, now=ctx.now()
        )
        if was_marked or not marks:
            states.mark_transferred(session, record_id, now=ctx.now())

    if not _change(ctx, record):
        return _result(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
    _note(
        ctx,
        rec,
        f"replay --force ({reason}): found in the ERP as {found.key} (was {rec.erp_ref}); nothing posted",
    )
    if stream is not None and stream.marks and not was_marked:
        ctx.dispatch.mark(ctx.connection, stream.name)
    return _result(
        ctx, rec, FOUND, f"the ERP has it as {found.key} (the ledger said {rec.erp_ref}); recorded", found.key
    )


def _force_to_pending(ctx: ItemContext, rec: SyncRecord, reason: str, why: str) -> bool:
    """--force and the ERP has no live document: posted|marked -> posting -> pending, to post again."""
    assert rec.id is not None
    record_id = rec.id

    def reopen(session: Session) -> None:
        states.begin_posting(session, record_id, force=True, now=ctx.now())
        states.resume_in_doubt(session, record_id, found_erp_ref=None, now=ctx.now())

    if not _change(ctx, reopen):
        return False
    _note(ctx, rec, f"replay --force ({reason}): {why}; posting it again")
    return True


def _replay_journal_entry(ctx: ItemContext, rec: SyncRecord, *, force: bool, reason: str) -> ReplayResult:
    """A journal entry (see the module docstring): its close posts it, except ``--force``."""
    assert rec.id is not None
    record_id = rec.id
    close_cmd = f'`ledgerbridge close "{rec.period_name}"`'
    if rec.state in POSTED_STATES and not force:
        return _result(ctx, rec, NOTHING, _already(rec))
    if rec.state in (states.PENDING, states.POSTING):
        return _result(ctx, rec, TO_CLOSE, f"{rec.state}: re-run its close ({close_cmd}) to post it")
    if rec.state in (states.FAILED, states.PARKED):
        fetched = _fetch_entry(ctx, rec.zuora_id)
        if fetched is None:
            return _result(
                ctx, rec, NOT_IN_ZUORA, f"journal entry {rec.zuora_id} is not in Zuora; nothing done"
            )
        entry: dict[str, Any] = fetched

        def back(session: Session) -> None:
            states.upsert_pulled(
                session,
                connection=ctx.connection,
                object_type=JE,
                zuora_id=rec.zuora_id,
                zuora_number=rec.zuora_number or rec.zuora_id,
                zuora_updated=None,
                payload=entry,
                account_id=None,
                source=RecordSource.CLOSE.value,
                now=ctx.now(),
            )
            states.replay(session, record_id, reason=reason, now=ctx.now())

        if not _change(ctx, back):
            return _result(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
        return _result(
            ctx,
            rec,
            TO_CLOSE,
            f"back to pending: re-run its close ({close_cmd}): it checks, posts, marks and reconciles it",
        )
    # posted | marked, forced
    try:
        found, why = _lookup(ctx, None, rec)
    except DuplicateDocuments as exc:
        return _result(ctx, rec, DUPLICATES, str(exc))
    except ApiError as exc:
        return _result(ctx, rec, ERROR, f"could not look it up in the ERP: {exc}; nothing done")
    if found is not None:
        return _record_found(ctx, None, rec, found, reason)
    current = _fetch_entry(ctx, rec.zuora_id)
    if current is None:
        return _result(ctx, rec, NOT_IN_ZUORA, f"journal entry {rec.zuora_id} is not in Zuora; nothing done")
    try:
        journal = journal_from_summary_entry(current, ctx.mapping)
    except MappingError as exc:
        return _result(
            ctx, rec, ERROR, f"not in the ERP, but it cannot be mapped: {exc.reason}; nothing done"
        )
    was_marked = rec.state == states.MARKED
    sent = journal_payload(journal)
    if not _change(
        ctx, lambda s: states.begin_posting(s, record_id, erp_payload=sent, force=True, now=ctx.now())
    ):
        return _result(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
    _note(ctx, rec, f"replay --force ({reason}): {why}; posting it again")
    try:
        with audit_subject(rec.subject):
            ref = ctx.erp.post_journal(journal)
    except Rejected as exc:
        refused = f"the ERP refused it: {exc}"
        _change(ctx, lambda s: states.park(s, record_id, refused, now=ctx.now()))
        return _result(ctx, rec, PARKED, refused)
    except Exception as exc:
        # Unsure whether the ERP has it: the row stays posting (in doubt); the close's post step
        # looks it up by natural key before posting again.
        return _result(ctx, rec, IN_DOUBT_ACTION, f"{type(exc).__name__}: {exc}; in doubt until looked up")

    def done(session: Session) -> None:
        states.complete_posting(
            session, record_id, erp_ref=ref.key, erp_payload=sent, released=ref.released, now=ctx.now()
        )
        if was_marked:  # Zuora already says transferredToAccounting=Yes
            states.mark_transferred(session, record_id, now=ctx.now())

    try:
        with ctx.ledger.session() as session:
            done(session)
    except LedgerError as exc:
        return _result(ctx, rec, IN_DOUBT_ACTION, f"posted as {ref.key} but not recorded: {exc}", ref.key)
    return _result(ctx, rec, POSTED, f"posted again as {ref.key}", ref.key)


def _already(rec: SyncRecord) -> str:
    return (
        f"already posted as {rec.erp_ref}; nothing done (use --force to check the ERP and post again "
        "only if it is missing)"
    )


def _outcome_result(ctx: ItemContext, rec: SyncRecord, outcome: PostOutcome | None) -> ReplayResult:
    if outcome is None:
        return _result(ctx, rec, ERROR, "the posting path did not report on it")
    action = _OUTCOME_ACTIONS.get(outcome.outcome, ERROR)
    detail = outcome.detail
    if action == POSTED:
        detail = f"posted as {outcome.erp_ref}" + (f" ({outcome.detail})" if outcome.detail else "")
    return _result(ctx, rec, action, detail, outcome.erp_ref)


def replay_records(
    ctx: ItemContext, records: Sequence[SyncRecord], *, force: bool = False, reason: str = "replay"
) -> list[ReplayResult]:
    """Re-drive ``records`` (see the module docstring); one result per record, in order.

    Item-level records that end up to be posted go through
    :func:`~shared.item_level.posting.post_records` together (dependencies first), which hands
    marking to ``ctx.dispatch``. ``reason`` goes to each record's timeline."""
    results: dict[int, ReplayResult] = {}
    to_refresh: dict[str, list[SyncRecord]] = defaultdict(list)
    to_post: list[SyncRecord] = []
    forced: dict[int, str] = {}
    for rec in records:
        assert rec.id is not None
        stream = for_object_type(rec.object_type)
        if stream is None:
            if rec.object_type != JE:
                results[rec.id] = _result(
                    ctx, rec, ERROR, f"{rec.object_type} is not a record ledgerbridge posts"
                )
                continue
            results[rec.id] = _replay_journal_entry(ctx, rec, force=force, reason=reason)
            continue
        if rec.state in POSTED_STATES:
            if not force:
                results[rec.id] = _result(ctx, rec, NOTHING, _already(rec))
                continue
            try:
                found, why = _lookup(ctx, stream, rec)
            except DuplicateDocuments as exc:
                results[rec.id] = _result(ctx, rec, DUPLICATES, str(exc))
                continue
            except MappingError as exc:
                results[rec.id] = _result(ctx, rec, ERROR, f"{exc.reason}; nothing done")
                continue
            except ApiError as exc:
                results[rec.id] = _result(
                    ctx, rec, ERROR, f"could not look it up in the ERP: {exc}; nothing done"
                )
                continue
            if found is not None:
                results[rec.id] = _record_found(ctx, stream, rec, found, reason)
                continue
            forced[rec.id] = why  # back to pending once Zuora still has it (below)
            to_refresh[stream.name].append(rec)
        elif rec.state == states.POSTING:
            to_post.append(rec)  # its payload is being sent: not refreshed underneath it
        else:
            to_refresh[stream.name].append(rec)
    for name, recs in to_refresh.items():
        stream = STREAMS[name]
        # ingest_rows completes cut item lists of the rows that may still be posted.
        rows = fetch_rows(ctx, stream, [r.zuora_id for r in recs], complete=False)
        fresh: list[dict[str, Any]] = []
        for rec in recs:
            assert rec.id is not None
            row = rows.get(rec.zuora_id)
            if row is None:
                results[rec.id] = _result(
                    ctx, rec, NOT_IN_ZUORA, f"{rec.subject} is not in Zuora; left as it is"
                )
            elif not stream.is_posted(row):
                status = get_field(row, "status")
                results[rec.id] = _result(
                    ctx,
                    rec,
                    NOT_SYNCED,
                    f"its status in Zuora is {status}, not {stream.posted_status}: left as it is",
                )
            elif rec.id in forced and not _force_to_pending(ctx, rec, reason, forced[rec.id]):
                results[rec.id] = _result(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
            else:
                fresh.append(row)
                to_post.append(rec)
        if fresh:
            ingest_rows(ctx, stream, fresh, source=RecordSource.REPLAY.value)
    ids: list[int] = []
    for rec in to_post:
        assert rec.id is not None
        record_id = rec.id
        if rec.state in (states.FAILED, states.PARKED) and not _change(
            ctx, lambda s, i=record_id: states.replay(s, i, reason=reason, now=ctx.now())
        ):
            results[record_id] = _result(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
            continue
        ids.append(record_id)
    if ids:
        summary = post_records(ctx, ids)
        outcomes = {o.record_id: o for o in summary.outcomes}
        for rec in to_post:
            assert rec.id is not None
            if rec.id in ids:
                results[rec.id] = _outcome_result(ctx, rec, outcomes.get(rec.id))
    return [results[rec.id] for rec in records if rec.id is not None and rec.id in results]
