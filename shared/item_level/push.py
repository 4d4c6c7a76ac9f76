"""The push path: a callout the web receiver recorded becomes a posted record.

The receiver (``worker/web.py`` over :mod:`shared.callouts`) only verifies, de-duplicates and
records the notification. Here a task re-fetches the full record by id from Zuora - the callout
carries identifiers only (zuora-api.md section 12.1) - checks it is in the state the stream syncs
(a 2710 "Credit Memo Created" may still be a draft), and sends it down the pull's posting path:
the same ledger row, the same ``posting`` guard, so a record both pushed and pulled reaches the
ERP once.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.item_level.context import ItemContext
from shared.item_level.posting import post_records
from shared.item_level.pull import fetch_one, ingest_rows
from shared.item_level.queries import callout
from shared.item_level.streams import for_object_type
from shared.ledger.models import CalloutState, RecordSource
from shared.logs import log_context
from shared.zuora.records import get_field

log = logging.getLogger("ledgerbridge.item_level.push")


def process_callout(ctx: ItemContext, callout_id: int) -> dict[str, Any]:
    """Re-fetch the record a callout names, ingest it (source ``push``) and post it.

    Zuora's typed errors propagate (the task retries with a countdown); everything about the
    record itself ends in the ledger. The callout row ends ``done`` (or ``failed`` when Zuora has
    no such record). Safe to run twice."""
    row = callout(ctx.ledger, callout_id)
    if row is None:
        return {"callout": callout_id, "status": "missing"}
    if row.state == CalloutState.DONE.value:
        return {"callout": callout_id, "status": "done already"}
    stream = for_object_type(row.object_type or "")
    if stream is None or not row.object_id:
        ctx.ledger.set_callout_state(callout_id, CalloutState.FAILED.value, "no object to fetch")
        return {"callout": callout_id, "status": "failed"}
    with log_context(
        connection=ctx.connection, stream=stream.name, record_id=f"{stream.object_type}:{row.object_id}"
    ):
        record = fetch_one(ctx, stream, row.object_id)
        if record is None:
            ctx.ledger.set_callout_state(
                callout_id,
                CalloutState.FAILED.value,
                f"{stream.object_type} {row.object_id} not found in Zuora",
            )
            return {"callout": callout_id, "status": "failed", "reason": "not found"}
        if not stream.is_posted(record):
            status = get_field(record, "status")
            note = f"status {status}: nothing to post (the pull posts it once it is {stream.posted_status})"
            ctx.ledger.set_callout_state(callout_id, CalloutState.DONE.value, note)
            return {"callout": callout_id, "status": "done", "reason": note}
        ingested = ingest_rows(ctx, stream, [record], source=RecordSource.PUSH.value)
        record_id = ingested.record_ids[row.object_id]
        summary = post_records(ctx, [*ingested.new_ids, record_id])
        ctx.ledger.set_callout_state(callout_id, CalloutState.DONE.value)
        log.info("callout %s (%s): %s", row.notification_id, row.event_code, summary.counts())
        return {"callout": callout_id, "status": "done", "record": record_id, "outcomes": summary.counts()}
