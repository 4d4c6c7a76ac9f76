"""A close run's attempts: counted on the run, named in its timeline, and never confused by whoever
follows one (shared/close/attempts.py, the reopening in shared/close/driver.py)."""

from __future__ import annotations

import pytest

from shared.close.attempts import attempt_note, attempt_to_follow, next_attempt, reopens, run_attempt, settled
from shared.close.driver import Resumed, take_over
from shared.close.results import Stale
from shared.ledger.models import CloseRun


def a_run(status: str, attempt: int | None = None) -> CloseRun:
    details = {} if attempt is None else {"run_attempt": {"number": attempt}}
    return CloseRun(id=7, connection="c", period_name="December 2024", step="trial_balance", status=status,
                    details=details)  # fmt: skip


def notes(harness, run_id):
    return [e.message for e in harness.ledger.timeline(f"close:{run_id}") if e.kind == "note"]


def fail_next_trial_balances(harness, times, message="no rate"):
    period = next(
        p for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "December 2024"
    )
    harness.zuora_backend.fail_trial_balance(period["id"], message, times=times)


@pytest.mark.parametrize(
    ("status", "stored", "attempt", "reopened", "followed"),
    [
        ("running", None, 1, None, 1),  # a run recorded before attempts were counted: attempt 1
        ("running", 3, 3, None, 3),  # a running run is continued, not reopened
        ("needs_attention", None, 1, 1, 2),
        ("needs_attention", 2, 2, 2, 3),  # a resume reopens it as the next attempt
        ("done", 2, 2, None, 2),
        ("failed", 1, 1, None, 1),
        ("dry_run", 1, 1, None, 1),
    ],
)
def test_attempt_of_a_run_and_the_attempt_a_resume_drives(status, stored, attempt, reopened, followed):
    run = a_run(status, stored)

    assert (run_attempt(run), reopens(run), attempt_to_follow(run)) == (attempt, reopened, followed)


@pytest.mark.parametrize(
    ("status", "stored", "following", "expected"),
    [
        ("needs_attention", 1, 2, False),  # the earlier attempt's stop: attempt 2 has not begun
        ("done", 1, 2, False),
        ("running", 2, 2, False),
        ("needs_attention", 2, 2, True),
        ("done", 2, 2, True),
        ("dry_run", 1, 1, True),
        ("failed", 1, 1, True),
        ("running", 3, 2, False),  # a later attempt is running: its outcome is the one to report
        ("done", 3, 2, True),
    ],
)
def test_settled_only_by_an_outcome_of_the_followed_attempt_or_a_later_one(
    status, stored, following, expected
):
    assert settled(a_run(status, stored), following) is expected


def test_next_attempt_counts_on_from_the_run_and_notes_name_their_attempt():
    assert next_attempt(a_run("needs_attention")).number == 2
    assert next_attempt(a_run("needs_attention", 4)).number == 5
    assert attempt_note(a_run("running", 3), "stopped at post: x") == "attempt 3: stopped at post: x"


def test_a_new_run_is_on_attempt_1_and_its_timeline_says_so(harness):
    run_id = harness.open()

    run = harness.ledger.get_close_run(run_id)
    assert run_attempt(run) == 1
    assert "run_attempt" not in run.details  # nothing stored until a reopening: old runs read the same
    assert notes(harness, run_id) == ["attempt 1: started at lookup"]


def test_a_fixed_trial_balance_resumed_completes_as_attempt_2_with_each_attempt_in_the_timeline(harness):
    fail_next_trial_balances(harness, 1)
    stopped = harness.close()
    assert (stopped.status, run_attempt(stopped), attempt_to_follow(stopped)) == ("needs_attention", 1, 2)

    run = harness.drive(stopped.id)

    assert (run.status, run_attempt(run)) == ("done", 2)
    assert run.details["run_attempt"]["started_at"]
    assert run.details["trial_balance"]["attempt"] == 2
    assert notes(harness, run.id) == [
        "attempt 1: started at lookup",
        f"attempt 1: stopped at trial_balance: {stopped.error}",
        "attempt 2 started: resumed at trial_balance after attempt 1 needed attention",
        "attempt 2: close finished (done)",
    ]


def test_a_second_stop_is_recorded_against_the_second_attempt(harness):
    fail_next_trial_balances(harness, 2)
    stopped = harness.close()

    again = harness.drive(stopped.id)

    assert (again.status, run_attempt(again)) == ("needs_attention", 2)
    assert notes(harness, again.id)[-1] == f"attempt 2: stopped at trial_balance: {again.error}"
    assert [n.event for n in harness.notifier.sent] == ["close.trial_balance_error"] * 2

    done = harness.drive(again.id)

    assert (done.status, run_attempt(done)) == ("done", 3)
    assert notes(harness, done.id)[-2:] == [
        "attempt 3 started: resumed at trial_balance after attempt 2 needed attention",
        "attempt 3: close finished (done)",
    ]


def test_a_resume_for_a_stopped_attempt_another_resume_already_reopened_does_not_reopen_it_again(harness):
    fail_next_trial_balances(harness, 2)
    stopped = harness.close()
    seen = reopens(stopped)  # two closes of the period saw attempt 1 stopped
    again = harness.drive(stopped.id)  # the first one's resume: attempt 2, stopped too
    assert (again.status, run_attempt(again)) == ("needs_attention", 2)
    timeline = notes(harness, again.id)
    lock = harness.lock("December 2024", harness.new_process())

    late = take_over(harness.context(), lock, again.id, "late-resume", reopen=seen)

    assert isinstance(late, Stale)
    assert late.reason == f"close run {again.id} is on attempt 2, not 1: not reopened again"
    run = harness.ledger.get_close_run(again.id)
    assert (run.status, run_attempt(run), run.error) == ("needs_attention", 2, again.error)
    assert notes(harness, run.id) == timeline
    assert lock.holder() is None  # the lock is released for the next close

    resumed = take_over(harness.context(), lock, again.id, "next-resume", reopen=reopens(run))

    assert resumed == Resumed("trial_balance")
    assert run_attempt(harness.ledger.get_close_run(again.id)) == 3


def test_resuming_a_running_run_continues_its_attempt(harness):
    run_id = harness.open()
    lock = harness.lock("December 2024", harness.new_process())

    resumed = take_over(harness.context(), lock, run_id, "driver-1", reopen=None)

    assert resumed == Resumed("lookup")
    run = harness.ledger.get_close_run(run_id)
    assert (run.status, run_attempt(run)) == ("running", 1)
    assert notes(harness, run_id) == ["attempt 1: started at lookup"]
