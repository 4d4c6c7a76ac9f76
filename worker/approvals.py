"""Approvals decided from a process that is not a worker (the console, the CLI): a close's, and a
manual journal entry's (:func:`decide_journal_request`).

:func:`decide_and_resume` records the decision (:func:`shared.close.approval.decide`) and, on an
approval, sends the run's resume to the workers; either way it sends the notices' delivery. A
failed send leaves nothing lost: an approved run is ``running`` in the ledger, so the close sweep
resumes it, and beat's notice delivery sends the notice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from shared.close.approval import decide
from shared.ledger.models import CloseRun, JournalEntryRequest
from shared.ledger.repo import Ledger

log = logging.getLogger("ledgerbridge.close")


def decide_and_resume(ledger: Ledger, run_id: int, *, user: str, approve: bool, comment: str) -> CloseRun:
    """Record ``user``'s decision on close run ``run_id`` (raises
    :class:`~shared.close.approval.ApprovalRefused`) and set the chain going again on approval."""
    run = decide(ledger, run_id, user=user, approve=approve, comment=comment)
    from worker.app import app as celery_app
    from worker.wiring import deliver_notices_now

    deliver_notices_now()
    if not approve:
        return run
    try:
        celery_app.send_task(
            "ledgerbridge.close.resume",
            kwargs={"close_run_id": run_id, "connection": run.connection},
            retry=False,
        )
    except Exception:
        # The decision is committed; the sweep resumes the run and beat delivers the notice.
        log.exception(
            "could not send the close's resume after its approval; the close sweep resumes it",
            extra={"close_run": run_id, "connection": run.connection},
        )
    return run


def decide_journal_request(
    ledger: Ledger, request_id: int, *, user: str, approve: bool, comment: str
) -> JournalEntryRequest:
    """Record ``user``'s decision on a manual journal entry request (raises
    :class:`~shared.journal_requests.RequestRefused`): approved, it is checked again against the
    mapping file and Zuora, and created there with its content's Idempotency-Key."""
    from shared import journal_entry, ports
    from shared.journal_requests import RequestRefused, decide_entry
    from shared.mapping import MappingFileError, load_mapping

    request = ledger.get_journal_request(request_id)
    settings = ports.settings()
    if approve and settings.mapping_file is None:
        raise RequestRefused("LEDGERBRIDGE_MAPPING_FILE is not set: the entry is checked against it again")
    zuora = ports.zuora(ports.connection(request.connection)) if approve else None

    def check(entry: Mapping[str, Any]) -> list[str]:
        assert zuora is not None and settings.mapping_file is not None
        try:
            mapping = load_mapping(settings.mapping_file)
        except MappingFileError as exc:
            return [str(exc)]
        items = entry.get("journalEntryItems") or []
        home = bool(items) and all("homeCurrencyAmount" in item for item in items)
        return journal_entry.check_entry(zuora, entry, mapping=mapping, home_currency_amounts=home)

    def create(entry: Mapping[str, Any], key: tuple[str, str]) -> str:
        assert zuora is not None
        return zuora.journal_entries.create(dict(entry), idempotency_key=key)

    return decide_entry(
        ledger, request_id, user=user, approve=approve, comment=comment, check=check, create=create
    )
