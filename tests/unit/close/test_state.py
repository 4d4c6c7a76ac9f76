"""The steps' typed state: runs recorded before the models existed load as they are and are stored
back key for key; unknown keys and misspelt attributes are errors, not a silent None."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.close.driver import record_result
from shared.close.results import Done, Stop
from shared.close.state import (
    STATE_MODELS,
    CheckState,
    ClosePeriodState,
    DiscardState,
    JournalRunState,
    LookupState,
    MarkState,
    PostState,
    ReconcileState,
    TransientState,
    TrialBalanceState,
    VerifyState,
    closed_period_allowed,
    details_update,
    entries_to_post,
    journal_numbers,
    step_state,
    stored_state,
)
from shared.ledger.db import loads_json
from shared.ledger.models import CloseRun

# ``CloseRun.details`` of a finished close, as the single-module close (shared/summary_gl.py)
# wrote it (captured from a run over the sandboxes; lists shortened), then a dry run's.
OLD_DONE = """{
 "lookup": {"period_id": "8ad095315d9dc9f81818e811892f902b", "status": "Open", "start_date": "2024-12-01",
            "end_date": "2024-12-31", "done_at": "2026-12-07T12:20:18.095671+00:00"},
 "trial_balance": {"requested": true, "job_started_at": 1767225600.0, "polls": 0,
                   "completed_at": "2025-12-31 16:00:00", "ours": true,
                   "done_at": "2026-12-07T12:20:18.123740+00:00"},
 "close_period": {"requested": true, "job_started_at": 1767225600.5, "polls": 1,
                  "previous_end": "2025-12-31 16:00:00", "seen_running": true, "closed": true, "ours": true,
                  "done_at": "2026-12-07T12:20:18.149931+00:00"},
 "journal_run": {"attempt": 1, "transaction_types": ["Invoice Item", "Taxation Item"],
                 "journal_entry_date": "2024-12-31", "number": "JR-00000001", "job_started_at": 1767225602.0,
                 "polls": 0, "status": "Completed", "total_entries": 4,
                 "done_at": "2026-12-07T12:20:18.175474+00:00"},
 "fetch": {"journal_run": "JR-00000001", "numbers": ["JE-00000001", "JE-00000002", "JE-00000003", "JE-00000004"],
           "count": 4, "pages": 1, "done_at": "2026-12-07T12:20:18.214738+00:00"},
 "check": {"entries": 4, "skipped": {"JE-00000004": "Cancelled in Zuora"}, "bad": {},
           "done_at": "2026-12-07T12:20:18.221119+00:00"},
 "mark": {"inflight": null, "entries": 3, "done_at": "2026-12-07T12:20:18.637842+00:00"},
 "post": {"entries": 3, "done_at": "2026-12-07T12:20:18.631118+00:00"},
 "verify": {"entries": 3, "zuora_totals": [{"account": "10200", "currency": "EUR", "debit": 46453.08,
            "credit": 179.87}, {"account": "10200", "currency": "USD", "debit": 298797.06, "credit": 0}],
            "misses": [], "done_at": "2026-12-07T12:20:18.656602+00:00"},
 "reconcile": {"lines": [{"account": "10200", "currency": "EUR", "zuora_debit": 46453.08, "zuora_credit": 179.87,
               "ledger_debit": 46453.08, "ledger_credit": 179.87, "erp_debit": 46453.08, "erp_credit": 179.87}],
               "differences": [], "entries": 3, "done_at": "2026-12-07T12:20:18.701095+00:00"},
 "transient": null
}"""

OLD_DRY_RUN = """{
 "close_period": {"skipped": "dry run: the period is left open", "done_at": "2026-12-07T12:20:18.814110+00:00"},
 "check": {"preview": [{"number": "JE-00000001", "date": "2024-12-31", "currency": "USD",
           "description": "JE-00000001 Invoice Item December 2024", "debit": 325793.20, "credit": 325793.20,
           "lines": [{"account": "11000", "subaccount": "000000", "debit": 325793.20, "credit": 0,
                      "description": "Accounts Receivable"},
                     {"account": "23000", "subaccount": null, "debit": 0, "credit": 325793.20,
                      "description": "Deferred Revenue"}]}],
           "bad": {}, "skipped": {}, "totals": {"USD": {"debit": 325793.20, "credit": 325793.20}},
           "done_at": "2026-12-07T12:20:18.862345+00:00"},
 "discard": {"requested": true, "job_started_at": 1767225601.0, "polls": 0, "cancelled": "JR-00000001",
             "done_at": "2026-12-07T12:20:18.885838+00:00"}
}"""

# A run stopped by a failed trial balance, and a mark step that died with one entry in flight
# (runs recorded before several entries were marked at once kept one number there).
OLD_STOPPED = """{
 "trial_balance": {"requested": true, "job_started_at": 1767225600.0, "polls": 0,
                   "runTrialBalanceErrorMessage": "no rate", "stopped": "the trial balance failed"},
 "mark": {"inflight": "JE-00000003"},
 "transient": {"step": "trial_balance", "attempts": 2, "error": "503 from Zuora"},
 "allow_closed": true
}"""


def old_run(text: str, **fields) -> CloseRun:
    return CloseRun(
        connection="c", period_name="December 2024", step="finished", details=loads_json(text), **fields
    )


@pytest.mark.parametrize("text", [OLD_DONE, OLD_DRY_RUN, OLD_STOPPED])
def test_every_step_state_of_an_old_run_loads_and_is_stored_back_key_for_key(text):
    details = loads_json(text)
    run = old_run(text)

    for key, value in details.items():
        if key == "allow_closed":
            continue
        model = TransientState if key == "transient" else STATE_MODELS[key]
        state = stored_state(run, model)
        if value is None:
            assert state is None
            continue
        stored = state.stored()
        if key == "mark" and isinstance(value["inflight"], str):
            assert stored == {"inflight": [value["inflight"]]}
        else:
            assert stored == value, key


def test_an_old_finished_run_reads_as_typed_values():
    run = old_run(OLD_DONE)

    assert step_state(run, LookupState).end_date == "2024-12-31"
    trial_balance = step_state(run, TrialBalanceState)
    assert (trial_balance.requested, trial_balance.ours, trial_balance.seen_running) == (True, True, False)
    assert step_state(run, ClosePeriodState).job_started_at == 1767225600.5
    journal_run = step_state(run, JournalRunState)
    assert (journal_run.number, journal_run.total_entries, journal_run.attempt) == ("JR-00000001", 4, 1)
    assert journal_numbers(run) == ["JE-00000001", "JE-00000002", "JE-00000003", "JE-00000004"]
    assert entries_to_post(run) == ["JE-00000001", "JE-00000002", "JE-00000003"]
    assert step_state(run, MarkState).inflight is None
    (eur, usd) = step_state(run, VerifyState).zuora_totals
    assert (eur.debit, usd.credit) == (Decimal("46453.08"), Decimal(0))
    (line,) = step_state(run, ReconcileState).lines
    assert line.erp_credit == Decimal("179.87")
    assert step_state(run, PostState).attempt == 1  # never written: the default


def test_an_old_dry_run_and_stopped_run_read_as_typed_values():
    dry = old_run(OLD_DRY_RUN)
    check = step_state(dry, CheckState)
    (entry,) = check.preview
    assert entry.lines[1].subaccount is None
    assert entry.lines[0].debit == check.totals["USD"].credit == Decimal("325793.20")
    assert step_state(dry, DiscardState).cancelled == "JR-00000001"

    stopped = old_run(OLD_STOPPED, allow_closed=False)
    trial_balance = step_state(stopped, TrialBalanceState)
    assert (trial_balance.error_message, trial_balance.stopped) == ("no rate", "the trial balance failed")
    assert step_state(stopped, MarkState).inflight == ["JE-00000003"]
    assert step_state(stopped, TransientState).attempts == 2
    assert closed_period_allowed(stopped)


def test_nothing_stored_reads_as_a_fresh_state():
    run = old_run("{}")

    assert stored_state(run, TransientState) is None
    assert step_state(run, TransientState) == TransientState()
    assert journal_numbers(run) == []
    assert step_state(run, CheckState).stored() == {}


def test_an_unknown_key_in_the_stored_state_is_refused():
    run = old_run('{"trial_balance": {"pols": 3}}')

    with pytest.raises(ValidationError, match="pols"):
        step_state(run, TrialBalanceState)


def test_a_misspelt_attribute_or_a_wrong_type_is_refused():
    state = TrialBalanceState()

    with pytest.raises(ValidationError, match="pols"):
        state.pols = 3  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="polls"):
        state.polls = "many"  # type: ignore[assignment]


def test_only_what_was_set_is_stored_and_without_removes_a_key():
    state = TrialBalanceState()
    state.requested = True
    state.error_message = None
    state.stopped = "why"

    assert state.stored() == {"requested": True, "runTrialBalanceErrorMessage": None, "stopped": "why"}
    assert state.without("stopped").stored() == {"requested": True, "runTrialBalanceErrorMessage": None}
    with pytest.raises(AttributeError, match="stoped"):
        state.without("stoped")


def test_merged_takes_what_the_other_set_and_refuses_another_model():
    stored = TrialBalanceState(requested=True, polls=3)

    merged = stored.merged(TrialBalanceState(completed_at="2025-12-31 16:00:00", polls=4))

    assert merged.stored() == {"requested": True, "polls": 4, "completed_at": "2025-12-31 16:00:00"}
    with pytest.raises(TypeError, match="ClosePeriodState"):
        stored.merged(ClosePeriodState(closed=True))  # type: ignore[arg-type]


def test_details_update_writes_states_whole_and_clears_others():
    assert details_update(PostState(entries=2), MarkState(inflight=None), cleared=[TransientState]) == {
        "post": {"entries": 2},
        "mark": {"inflight": None},
        "transient": None,
    }


class _Ledger:
    """The two calls record_result makes on a ledger for a Done that does not finish the run."""

    def __init__(self, run: CloseRun) -> None:
        self.run = run
        self.updates: list[dict] = []

    def get_close_run(self, run_id: int) -> CloseRun:
        return self.run

    def update_close_run(self, run_id: int, **changes) -> CloseRun:
        self.updates.append(changes)
        return self.run


class _Context:
    def __init__(self, ledger: _Ledger) -> None:
        self.ledger = ledger


def test_a_done_merges_its_state_over_the_stored_one_stamps_it_and_drops_the_stop():
    ledger = _Ledger(old_run(OLD_STOPPED, id=5))

    record_result(
        _Context(ledger), ledger.run, "trial_balance", Done("close_period", TrialBalanceState(ours=True))
    )

    (update,) = ledger.updates
    assert update["step"] == "close_period"
    written = update["details_update"]
    assert written["transient"] is None
    trial_balance = written["trial_balance"]
    assert "stopped" not in trial_balance
    assert dt.datetime.fromisoformat(trial_balance.pop("done_at")).tzinfo is not None
    assert trial_balance == {
        "requested": True,
        "job_started_at": 1767225600.0,
        "polls": 0,
        "runTrialBalanceErrorMessage": "no rate",
        "ours": True,
    }


def test_a_done_with_another_steps_state_is_refused():
    ledger = _Ledger(old_run(OLD_STOPPED, id=5))

    with pytest.raises(TypeError, match="PostState into TrialBalanceState"):
        record_result(
            _Context(ledger), ledger.run, "trial_balance", Done("close_period", PostState(entries=1))
        )
    assert ledger.updates == []


def test_a_stop_records_its_reason_on_the_steps_state():
    class Notes(_Ledger):
        def note(self, *args) -> None:
            return None

        def update_close_run(self, run_id: int, **changes) -> CloseRun:
            # The notice is recorded with the status it reports (the ledger calls this in its transaction).
            self.run.status = changes["status"]
            self.notices.append(changes["notice"](self.run))
            return super().update_close_run(run_id, **changes)

    class Context(_Context):
        handed_on = 0

        def notices_recorded(self) -> None:
            self.handed_on += 1

    ledger = Notes(old_run(OLD_DONE, id=5))
    ledger.notices = []
    ctx = Context(ledger)
    ctx.connection = "c"

    record_result(ctx, ledger.run, "verify", Stop("2 misses"))

    (update,) = ledger.updates
    assert update["status"] == "needs_attention"
    assert update["details_update"] == {"verify": {**loads_json(OLD_DONE)["verify"], "stopped": "2 misses"}}
    assert [(n.event, n.subject, n.dedupe_key) for n in ledger.notices] == [
        ("close.needs_attention", "close:5", "close:5:needs_attention:attempt-1")
    ]
    assert ctx.handed_on == 1


def test_a_run_the_old_close_stopped_at_the_trial_balance_resumes_and_completes(harness):
    run_id = harness.open()
    period = next(
        p for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "December 2024"
    )
    old = loads_json(OLD_STOPPED)
    lookup = {**loads_json(OLD_DONE)["lookup"], "period_id": period["id"]}
    harness.ledger.update_close_run(
        run_id,
        step="trial_balance",
        status="needs_attention",
        error="the trial balance failed",
        period_id=period["id"],
        details_update={
            "lookup": lookup,
            "trial_balance": old["trial_balance"],
            "transient": old["transient"],
        },
    )

    run = harness.drive(run_id)

    assert run.status == "done", run.error
    assert run.details["lookup"] == lookup
    assert run.details["trial_balance"]["attempt"] == 2
    assert run.details["transient"] is None
    assert len(harness.requests("PUT", "/run-trial-balance")) == 1
