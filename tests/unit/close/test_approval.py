"""Maker-checker for the close (shared.close.approval), driven over the in-process sandboxes: with
approval on, a close stops after its check until someone other than its starter approves; what is
posted is what was approved."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.close.approval import (
    ApprovalRefused,
    account_totals,
    approval_view,
    decide,
    journal_fingerprint,
    record_maker,
)
from shared.close.state import (
    ApprovalState,
    LookupState,
    ReconcileLine,
    ReconcileState,
    details_update,
    step_state,
)
from shared.ledger.models import CloseStatus
from tests.unit.close.support import write_mapping
from tests.unit.close.test_close_flow import assert_closed_exactly_once, expected_lines, run_entries


def _awaiting(harness, *, by="maker"):
    harness.approval = "close"
    run_id = harness.open()
    record_maker(harness.ledger, harness.ledger.get_close_run(run_id), by)
    return harness.drive(run_id)


def test_close_with_approval_stops_after_check_and_posts_nothing(harness):
    run = _awaiting(harness)

    assert run.status == CloseStatus.AWAITING_APPROVAL.value
    assert run.step == "check"
    assert run.error is None
    assert harness.erp_batches() == []
    assert {e["transferredToAccounting"] for e in harness.zuora_entries()} == {"No"}
    state = step_state(run, ApprovalState)
    entries = run_entries(harness, run)
    assert sorted(e.number for e in state.entries) == [e["number"] for e in entries]
    assert state.started_by == "maker"
    assert state.attempt == 1
    # The totals are those of the journals as mapped, per ERP account and currency.
    assert state.totals == account_totals(state.entries)
    assert sum(t.debit for t in state.totals) == sum(t.credit for t in state.totals) > 0
    from shared.mapping import load_mapping

    mapping = load_mapping(harness.mapping_path)
    for shown in state.entries:
        entry = next(e for e in entries if e["number"] == shown.number)
        assert sorted((line.account, line.debit, line.credit) for line in shown.lines) == expected_lines(
            entry, mapping
        )
    (notice,) = harness.notifier.sent
    assert notice.event == "close.awaiting_approval"
    assert f"close run {run.id}) waits for approval: {len(state.entries)} journal entries" in notice.text
    assert notice.fields["started_by"] == "maker"


def test_the_starter_cannot_approve_and_a_rejection_needs_a_comment(harness):
    run = _awaiting(harness)

    with pytest.raises(ApprovalRefused, match=r"maker started close run .* another approver must"):
        decide(harness.ledger, run.id, user="maker", approve=True, comment="fine")
    with pytest.raises(ApprovalRefused, match="a rejection needs a comment"):
        decide(harness.ledger, run.id, user="checker", approve=False, comment="  ")
    assert harness.ledger.get_close_run(run.id).status == CloseStatus.AWAITING_APPROVAL.value


def test_an_approved_close_posts_exactly_what_was_approved_and_records_who(harness):
    run = _awaiting(harness)

    decided = decide(harness.ledger, run.id, user="checker", approve=True, comment="matches the sub-ledger")
    assert decided.status == CloseStatus.RUNNING.value
    with pytest.raises(ApprovalRefused, match="is running, not awaiting approval"):
        decide(harness.ledger, run.id, user="other", approve=True, comment="")
    run = harness.drive(run.id)

    assert_closed_exactly_once(harness, run)
    state = step_state(run, ApprovalState)
    (decision,) = state.decisions
    assert (decision.user, decision.decision, decision.comment, decision.attempt) == (
        "checker",
        "approved",
        "matches the sub-ledger",
        1,
    )
    assert sorted(decision.journals) == sorted(journal_fingerprint(e) for e in state.entries)
    notes = [
        e for e in harness.ledger.timeline(f"close:{run.id}") if e.message and "approved by" in e.message
    ]
    assert [(e.message, e.actor) for e in notes] == [
        ("attempt 1: approved by checker: matches the sub-ledger", "checker")
    ]
    events = [n.event for n in harness.notifier.sent]
    assert events[0] == "close.awaiting_approval" and events[-1] == "close.completed"


def test_a_mapping_changed_after_approval_is_asked_again_before_anything_is_posted(harness, tmp_path):
    run = _awaiting(harness)
    decide(harness.ledger, run.id, user="checker", approve=True, comment="ok")
    # Between the approval and the post, someone points an account at another GL account.
    text = harness.mapping_path.read_text("utf-8")
    first_account = next(t.account for t in step_state(run, ApprovalState).totals)
    harness.mapping_path.write_text(text.replace(f'"{first_account}"', '"9999"', 1), "utf-8")

    run = harness.drive(run.id)

    assert run.status == CloseStatus.AWAITING_APPROVAL.value
    assert harness.erp_batches() == []
    state = step_state(run, ApprovalState)
    assert "9999" in {t.account for t in state.totals}


def test_a_rejected_close_needs_a_person_and_asks_again_when_run_again(harness):
    run = _awaiting(harness)

    rejected = decide(harness.ledger, run.id, user="checker", approve=False, comment="revenue looks short")
    assert rejected.status == CloseStatus.NEEDS_ATTENTION.value
    assert rejected.error.startswith(
        "rejected by checker: revenue looks short. Fix what the comment asks for"
    )
    assert harness.erp_batches() == []

    run = harness.drive(run.id)  # the close run again: a new attempt, checked and asked again

    assert run.status == CloseStatus.AWAITING_APPROVAL.value
    assert step_state(run, ApprovalState).attempt == 2
    assert harness.erp_batches() == []


def test_the_view_compares_each_account_with_the_previous_period(harness):
    run = _awaiting(harness)
    state = step_state(run, ApprovalState)
    first, *rest = state.totals
    # The previous period's close, done and reconciled (as the ledger keeps it).
    previous, _ = harness.ledger.open_close_run(
        harness.connection, "November 2024", False, False, step="lookup"
    )
    line = ReconcileLine(
        account=first.account,
        currency=first.currency,
        zuora_debit=Decimal("100.00"),
        zuora_credit=Decimal("40.00"),
        ledger_debit=Decimal("100.00"),
        ledger_credit=Decimal("40.00"),
        erp_debit=Decimal("100.00"),
        erp_credit=Decimal("40.00"),
    )
    harness.ledger.update_close_run(
        previous.id,
        status="done",
        details_update=details_update(
            LookupState(start_date="2024-11-01", end_date="2024-11-30"), ReconcileState(lines=[line])
        ),
    )

    view = approval_view(harness.ledger, run.id)

    assert view.awaiting and view.previous_period == "November 2024" and view.previous_run_id == previous.id
    shown = {(t.account, t.currency): t for t in view.totals}
    same = shown[(first.account, first.currency)]
    assert (same.previous_debit, same.previous_credit) == (Decimal("100.00"), Decimal("40.00"))
    assert same.change == (first.debit - first.credit) - Decimal("60.00")
    for other in rest:
        # Not posted in the previous period: its change is the whole of it.
        assert shown[(other.account, other.currency)].change == other.debit - other.credit


def test_without_approval_a_close_never_waits(make_harness, tmp_path):
    harness = make_harness(mapping=write_mapping(tmp_path / "m.toml"))
    run = harness.close()
    assert_closed_exactly_once(harness, run)
    assert step_state(run, ApprovalState).decisions == []
