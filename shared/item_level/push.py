"""The push path: callouts the web receiver recorded become posted records.

The receiver (``worker/web.py`` over :mod:`shared.callouts`) only verifies, de-duplicates and
records the notifications, and hands them on in small batches. Here a task re-fetches the full
records by id from Zuora - a callout carries identifiers only (zuora-api.md section 12.1) - with
one Object Query per stream and page of ids, checks each is in the state the stream syncs (a 2710
"Credit Memo Created" may still be a draft), and sends them down the pull's posting path: the same
ledger rows, the same ``posting`` guard, so a record both pushed and pulled (or pushed twice)
reaches the ERP once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from shared.item_level.context import ItemContext
from shared.item_level.posting import post_records
from shared.item_level.pull import fetch_by_ids, ingest_rows
from shared.item_level.queries import callouts_by_ids
from shared.item_level.streams import Stream, for_object_type
from shared.ledger.models import CalloutNotification, CalloutState, RecordSource
from shared.logs import log_context
from shared.zuora.records import get_field

log = logging.getLogger("ledgerbridge.item_level.push")

# Callouts one task takes at most: the receiver sends bursts of up to this many.
MAX_CALLOUTS_PER_TASK = 50

Result = dict[str, Any]


def process_callout(ctx: ItemContext, callout_id: int) -> Result:
    """:func:`process_callouts` for one callout; its result."""
    return process_callouts(ctx, [callout_id])[0]


def process_callouts(ctx: ItemContext, callout_ids: Sequence[int]) -> list[Result]:
    """Re-fetch the records these callouts name, ingest them (source ``push``) and post them;
    one result per id, in order.

    Zuora's typed errors propagate before any callout changes state (the task retries the batch
    with a countdown); everything about a record itself ends in the ledger. Each callout row ends
    ``done`` (or ``failed`` when Zuora has no such record). Safe to run twice."""
    ids = list(dict.fromkeys(int(i) for i in callout_ids))
    rows = callouts_by_ids(ctx.ledger, ids)
    results: dict[int, Result] = {}
    changes: dict[int, tuple[str, str | None]] = {}
    by_stream: dict[str, list[CalloutNotification]] = defaultdict(list)
    stream_of: dict[int, Stream] = {}  # callout id -> the stream of its object
    for callout_id in ids:
        row = rows.get(callout_id)
        if row is None:
            results[callout_id] = {"callout": callout_id, "status": "missing"}
        elif row.state == CalloutState.DONE.value:
            results[callout_id] = {"callout": callout_id, "status": "done already"}
        else:
            stream = for_object_type(row.object_type or "")
            if stream is None or not row.object_id:
                changes[callout_id] = (CalloutState.FAILED.value, "no object to fetch")
                results[callout_id] = {"callout": callout_id, "status": "failed"}
            else:
                stream_of[callout_id] = stream
                by_stream[stream.name].append(row)
    to_post: list[int] = []
    posted_by: dict[int, int] = {}  # callout id -> ledger record id
    for group in by_stream.values():
        stream = stream_of[group[0].id or 0]
        with log_context(connection=ctx.connection, stream=stream.name):
            posted_by.update(_ingest(ctx, stream, group, results=results, changes=changes, to_post=to_post))
    outcomes = {o.record_id: o.outcome for o in post_records(ctx, to_post).outcomes} if to_post else {}
    for callout_id, record_id in posted_by.items():
        changes[callout_id] = (CalloutState.DONE.value, None)
        results[callout_id] = {
            "callout": callout_id,
            "status": "done",
            "record": record_id,
            "outcome": outcomes.get(record_id),
        }
    if changes:
        ctx.ledger.set_callout_states(changes)
    for callout_id, record_id in posted_by.items():
        row = rows[callout_id]
        with log_context(
            connection=ctx.connection,
            stream=stream_of[callout_id].name,
            record_id=f"{row.object_type}:{row.object_id}",
        ):
            log.info(
                "callout %s (%s): %s",
                row.notification_id,
                row.event_code,
                outcomes.get(record_id, "not posted"),
            )
    return [results[i] for i in ids]


def _ingest(
    ctx: ItemContext,
    stream: Stream,
    group: Sequence[CalloutNotification],
    *,
    results: dict[int, Result],
    changes: dict[int, tuple[str, str | None]],
    to_post: list[int],
) -> dict[int, int]:
    """Fetch and ingest one stream's callouts; ``{callout id: ledger record id}`` of those whose
    record is to be posted (its id, and those of new dependencies, appended to ``to_post``).
    The other callouts get their final state in ``changes``."""
    found = fetch_by_ids(ctx, stream, [str(row.object_id) for row in group])
    postable: dict[str, dict[str, Any]] = {}
    waiting: list[CalloutNotification] = []
    for row in group:
        assert row.id is not None
        record = found.get(str(row.object_id))
        if record is None:
            note = f"{stream.object_type} {row.object_id} not found in Zuora"
            changes[row.id] = (CalloutState.FAILED.value, note)
            results[row.id] = {"callout": row.id, "status": "failed", "reason": "not found"}
        elif not stream.is_posted(record):
            status = get_field(record, "status")
            note = f"status {status}: nothing to post (the pull posts it once it is {stream.posted_status})"
            changes[row.id] = (CalloutState.DONE.value, note)
            results[row.id] = {"callout": row.id, "status": "done", "reason": note}
        else:
            postable[str(row.object_id)] = record
            waiting.append(row)
    if not postable:
        return {}
    ingested = ingest_rows(ctx, stream, list(postable.values()), source=RecordSource.PUSH.value)
    to_post.extend(ingested.new_ids)
    to_post.extend(ingested.record_ids[zuora_id] for zuora_id in postable)
    return {row.id: ingested.record_ids[str(row.object_id)] for row in waiting if row.id is not None}
