"""A close's approval decided from a process that is not a worker (the console, the CLI).

:func:`decide_and_resume` records the decision (:func:`shared.close.approval.decide`) and, on an
approval, sends the run's resume to the workers; either way it sends the notices' delivery. A
failed send leaves nothing lost: an approved run is ``running`` in the ledger, so the close sweep
resumes it, and beat's notice delivery sends the notice.
"""

from __future__ import annotations

import logging

from shared.close.approval import decide
from shared.ledger.models import CloseRun
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
