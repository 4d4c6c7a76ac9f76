"""The item-level sync: invoices, payments, refunds, credit and debit memos (with their items) and
billing accounts, pulled from Zuora behind gap-proof high-water marks or pushed by callouts,
posted once to the ERP's receivables and marked transferred in Zuora.

Delivery is **at least once** with idempotent effects: every record is a ledger row
(``pending -> posting -> posted -> marked``); a row is set ``posting`` in a committed transaction
before its one ERP call, and a row found ``posting`` without an ERP reference is looked up in the
ERP by natural key before anything is created again. Redis and the queue only make things fast:
the sweep re-drives whatever they lose.

Modules: :mod:`.streams` (the streams as data), :mod:`.pull` (pages and marks), :mod:`.planner`
(one row's ERP document or what it waits for; posting's and the replay preview's),
:mod:`.posting` (one row, one batch), :mod:`.marking` (``TransferredToAccounting``),
:mod:`.push` (callouts), :mod:`.sweep` (re-drive, mark audit), :mod:`.status`, :mod:`.context`
(ports and knobs), :mod:`.queries` (ledger reads). The run lock is :mod:`shared.coordination.run_lock`.
"""

from shared.coordination.run_lock import RunLock
from shared.item_level.context import Dispatcher, ItemContext, Options
from shared.item_level.marking import MarkSummary, mark_stream
from shared.item_level.posting import PostOutcome, PostSummary, post_one, post_records
from shared.item_level.pull import PageProgress, PullResult, Resume, fetch_by_ids, ingest_rows, pull_stream
from shared.item_level.push import process_callout, process_callouts
from shared.item_level.status import SyncStatus, sync_status
from shared.item_level.streams import STREAM_NAMES, STREAMS, Stream, UnknownStream, get_stream, select_streams
from shared.item_level.sweep import SweepSummary, audit_marks, sweep

__all__ = [
    "STREAMS",
    "STREAM_NAMES",
    "Dispatcher",
    "ItemContext",
    "MarkSummary",
    "Options",
    "PageProgress",
    "PostOutcome",
    "PostSummary",
    "PullResult",
    "Resume",
    "RunLock",
    "Stream",
    "SweepSummary",
    "SyncStatus",
    "UnknownStream",
    "audit_marks",
    "fetch_by_ids",
    "get_stream",
    "ingest_rows",
    "mark_stream",
    "post_one",
    "post_records",
    "process_callout",
    "process_callouts",
    "pull_stream",
    "select_streams",
    "sweep",
    "sync_status",
]
