"""Re-driving records by hand: ``ledgerbridge replay RECORD`` and ``replay --failed``.

A person fixed the cause of a parked or failed record (the mapping file, the account in Zuora,
the ERP's reference data) and wants it posted now, or wants to see what would be sent first.

**Preview** (``--dry-run``, :func:`preview`): read-only. The record is re-fetched from Zuora by id
with the same query the pull and the push use (expanded item lists completed when cut at the page
size, zuora-api.md section 9.3), planned by the posting planner in its read-only mode with the
*current* mapping file, and rendered by the ERP adapter as the exact request it would send - the
Acumatica entity body with its wrapped values (acumatica-api.md section 3), or the rows the GL
file export would write - next to a unified diff against what the ledger says was sent before
(``SyncRecord.posted_payload``, rendered the same way). Nothing is written: no ledger change, no
ERP call (but the ERP natural-key lookup that ``--force`` would make, a read), no Zuora write.

**Replay** (:func:`replay_records`): a failed or parked record goes back to pending and is posted
through the posting path, a pending one is posted now, a posted one is left alone unless
``force`` finds the ERP without it (the table by state is in :mod:`shared.replay.redrive`).
Journal entries belong to their close (:mod:`shared.replay.journal_entries`). A record Zuora no
longer has, or no longer in the status the sync posts (an invoice cancelled after it was parked),
is left as it is.

Modules: :mod:`.records` (finding records in the ledger, Zuora and the ERP), :mod:`.payloads`
(the request as shown, what was sent before read back), :mod:`.dry_run`, :mod:`.results`,
:mod:`.redrive`, :mod:`.journal_entries`.
"""

from shared.replay.dry_run import Preview, preview, preview_many
from shared.replay.payloads import ErpRequest, document_from_payload, normalise, pretty
from shared.replay.records import (
    ReplayError,
    failed_journal_entries,
    failed_records,
    fetch_rows,
    label,
    resolve,
)
from shared.replay.redrive import replay_records
from shared.replay.results import OK_ACTIONS, ReplayResult

__all__ = [
    "OK_ACTIONS",
    "ErpRequest",
    "Preview",
    "ReplayError",
    "ReplayResult",
    "document_from_payload",
    "failed_journal_entries",
    "failed_records",
    "fetch_rows",
    "label",
    "normalise",
    "pretty",
    "preview",
    "preview_many",
    "replay_records",
    "resolve",
]
