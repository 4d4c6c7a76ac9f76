"""``replay --dry-run``: what a replay of a record would send and do, changing nothing.

The record is re-fetched from Zuora, planned by the posting planner in its read-only mode
(:func:`shared.item_level.planner.plan` with ``PREVIEW``: the document posting would build with the
current mapping, and notes on what posting would post first or wait for), and rendered by the
connection's ERP adapter (:meth:`~shared.erp.base.ErpTarget.render`, the code its sending path
uses). What the ledger says was sent before is rendered the same way and diffed against it.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.close.journals import journal_payload
from shared.erp.base import Application, AppliedRef, Document
from shared.erp.errors import DuplicateDocuments
from shared.item_level import planner
from shared.item_level.context import ItemContext
from shared.item_level.planner import Ready, erp_payload
from shared.item_level.streams import Stream, for_object_type
from shared.ledger import states
from shared.ledger.models import SyncRecord
from shared.mapping import MappingError, journal_from_summary_entry
from shared.replay.payloads import ErpRequest, document_from_payload, jsonable, normalise, pretty
from shared.replay.records import JE, POSTED_STATES, ReplayError, fetch_entry, fetch_rows, lookup
from shared.zuora.records import get_field


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
            "payload": jsonable(self.payload) if self.payload is not None else None,
            "request": self.request.as_dict() if self.request else None,
            "previous_payload": jsonable(rec.posted_payload) if rec.posted_payload is not None else None,
            "previous_request": self.previous.as_dict() if self.previous else None,
            "diff": self.diff,
            "changed": self.changed,
            "would": self.would,
            "erp_found": self.erp_found,
        }


def _ledger_refs(ctx: ItemContext) -> AppliedRef:
    """The ERP reference the ledger recorded for the document an application applies to (the
    adapter looks the same document up in the ERP by natural key when it posts)."""

    def ref(app: Application) -> str | None:
        for row in ctx.ledger.find_records(ctx.connection, app.natural_key):
            if row.object_type == app.kind and row.erp_ref:
                return row.erp_ref
        return None

    return ref


def _request(ctx: ItemContext, document: Document, notes: list[str]) -> ErpRequest:
    """The exact request the connection's ERP adapter would make for ``document``."""
    rendered = ctx.erp.render(document, applied=_ledger_refs(ctx))
    for app in rendered.unresolved:
        notes.append(
            f"the {app.kind} {app.natural_key} it applies to has no ERP reference in the ledger "
            "(shown as '?'; the adapter looks it up in the ERP when it posts)"
        )
    return ErpRequest.of(rendered)


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
    return _request(ctx, document, [])


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
    ``fetched`` is the record as already re-fetched from Zuora by
    :func:`~shared.replay.records.fetch_rows` (None: Zuora
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
        fresh = fetch_entry(ctx, rec.zuora_id)
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
            result.request = _request(ctx, journal, notes)
    else:
        plan = planner.plan(ctx, stream, rec, source, planner.PREVIEW)
        notes.extend(plan.notes)
        if isinstance(plan, Ready):
            result.payload = normalise(erp_payload(stream, plan))
            result.request = _request(ctx, plan.document, notes)
            for item in plan.not_applied:
                notes.append(f"application to {item['target']} left out: {item['reason']}")
        else:
            result.problem = plan.reason
    result.previous = _previous(ctx, rec, notes)
    result.diff = _diff(rec, result.previous, result.request, result.payload)
    if force and rec.state in POSTED_STATES:
        try:
            found, why = lookup(ctx, stream, rec)
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
