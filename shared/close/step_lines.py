"""A close run's steps as people see them (``ledgerbridge close-status`` and the Finance console):
each step's title, its state (done, skipped, running, stopped, waiting for approval, pending) and
one line of detail from what the step recorded in ``close_run.details``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.close.driver import Progress, progress
from shared.close.results import steps_of
from shared.ledger.models import CloseRun, CloseStatus
from shared.ledger.repo import Ledger

STEP_TITLES = {
    "lookup": "look up the period",
    "trial_balance": "trial balance",
    "close_period": "close the period",
    "journal_run": "journal run",
    "fetch": "fetch journal entries",
    "check": "check entries",
    "post": "post to the ERP",
    "mark": "mark transferred",
    "verify": "verify",
    "reconcile": "reconcile",
    "discard": "cancel the dry run's journal run",
}
STATE_WORDS = {
    "done": "done",
    "skipped": "skipped",
    "running": "running",
    "stopped": "stopped",
    "awaiting": "waiting for approval",
    "pending": "not yet",
}
STOPPED_STATUSES = (CloseStatus.NEEDS_ATTENTION.value, CloseStatus.FAILED.value)


@dataclass(frozen=True)
class StepLine:
    name: str
    title: str
    state: str
    detail: str

    @property
    def state_words(self) -> str:
        return STATE_WORDS[self.state]

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "title": self.title,
            "state": self.state,
            "state_words": self.state_words,
            "detail": self.detail,
        }


def step_detail(step: str, st: dict[str, Any], prog: Progress) -> str:
    """One line about a step of a close run, from what the step recorded."""
    polls = f" ({st['polls']} polls)" if st.get("polls") else ""
    if st.get("stopped"):
        return f"stopped: {st['stopped']}"
    if step == "lookup":
        return f"{st['period_id']} ({st.get('status')})" if st.get("period_id") else ""
    if step in ("trial_balance", "close_period"):
        if st.get("skipped"):
            return str(st["skipped"])
        if st.get("done_at"):
            if step == "close_period":
                return "closed, trial balance completed"
            return "completed" + polls if st.get("ours") else "already completed before this close"
        return f"waiting{polls}" if st.get("requested") or st.get("polls") else ""
    if step == "journal_run":
        number = st.get("number") or ""
        return f"{number} {st.get('status') or ('waiting' + polls if number else '')}".strip()
    if step == "fetch":
        return f"{st['count']} entries in {st['pages']} page(s)" if "count" in st else ""
    if step == "check" and "entries" in st:
        bad, skipped = len(st.get("bad") or {}), len(st.get("skipped") or {})
        return f"{st['entries'] - bad - skipped} ok, {skipped} skipped, {bad} with problems"
    if step == "post" and prog.entries:
        doubt = f", {prog.in_doubt} in doubt" if prog.in_doubt else ""
        return f"{prog.posted}/{prog.entries} posted{doubt}"
    if step == "mark" and prog.entries:
        return f"{prog.marked}/{prog.entries} marked transferredToAccounting=Yes"
    if step == "verify" and st.get("done_at"):
        return f"{st.get('entries', 0)} entries Yes in Zuora, each with an ERP reference"
    if step == "reconcile" and st.get("done_at"):
        return f"{len(st.get('lines') or [])} account lines match to the cent"
    if step == "discard" and st.get("done_at"):
        return f"journal run {st.get('cancelled')} cancelled" if st.get("cancelled") else "nothing to cancel"
    return ""


def step_lines(ledger: Ledger, run: CloseRun) -> list[StepLine]:
    """The run's steps in order, each with its state and detail."""
    prog = progress(ledger, run)
    steps = steps_of(run)
    current = steps.index(run.step) if run.step in steps else len(steps)
    lines = []
    for index, step in enumerate(steps):
        st = dict(run.details.get(step) or {})
        if index < current:
            state = "done" if st.get("done_at") else "skipped"
        elif index == current:
            if run.status in STOPPED_STATUSES:
                state = "stopped"
            elif run.status == CloseStatus.AWAITING_APPROVAL.value:
                state = "awaiting"
            else:
                state = "running"
        else:
            state = "pending"
        lines.append(StepLine(step, STEP_TITLES.get(step, step), state, step_detail(step, st, prog)))
    return lines
