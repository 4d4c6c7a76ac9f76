"""``ledgerbridge close --wait`` and ``close-status`` report the attempt a close is on, and never an
earlier attempt's outcome as the current one.

The workers are replaced at the command's edge: ``start_close`` (which would enqueue the resume) is
a stand-in that changes the ledger as a worker's resume would, in a thread, a moment later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

import worker.tasks.close as close_tasks
from shared import ports
from shared.close.attempts import attempt_to_follow, next_attempt
from shared.close.state import details_update
from shared.ledger.models import CloseRun
from shared.ledger.repo import Ledger

CONN = "acme"
STOP = "the trial balance failed in Zuora: no rate"


def flat(text: str) -> str:
    """The text with every run of whitespace one space (rich wraps a title to its table's width)."""
    return " ".join(text.split())


def stopped_run(ledger: Ledger, attempt: int = 1) -> CloseRun:
    run, _ = ledger.open_close_run(CONN, "December 2024", step="lookup")
    stored = {"run_attempt": {"number": attempt}} if attempt > 1 else None
    return ledger.update_close_run(
        run.id or 0, step="trial_balance", status="needs_attention", error=STOP, details_update=stored
    )


@pytest.fixture
def resume_later(
    monkeypatch,
) -> Iterator[Callable[[Ledger, Callable[[Ledger, CloseRun], None] | None], None]]:
    """Make ``close`` find the period's open run and hand it to a stand-in worker: ``effect`` runs
    0.3 s later in a thread (None: no worker ever takes the resume)."""
    threads: list[threading.Thread] = []

    def install(ledger: Ledger, effect: Callable[[Ledger, CloseRun], None] | None) -> None:
        def start_close(
            connection: str, period: str, *, allow_closed: bool, dry_run: bool, started_by: str | None = None
        ) -> object:
            run, _ = ledger.open_close_run(connection, period, step="lookup")
            if effect is not None:
                timer = threading.Timer(0.3, effect, args=(ledger, run))
                threads.append(timer)
                timer.start()
            return close_tasks.Started(run, "resumed", attempt_to_follow(run))

        monkeypatch.setattr(close_tasks, "start_close", start_close)
        monkeypatch.setattr(ports, "connection", lambda name=None: SimpleNamespace(name=CONN))

    yield install
    for thread in threads:
        thread.join(10)


def reopen_and_finish(ledger: Ledger, run: CloseRun) -> None:
    """What a worker does with the resume: attempt 2 starts, then finishes."""
    ledger.update_close_run(
        run.id or 0, step="trial_balance", status="running", error=None,
        details_update=details_update(next_attempt(run)),
    )  # fmt: skip
    ledger.update_close_run(run.id or 0, step="finished", status="done")


def test_close_wait_follows_the_attempt_it_resumed_to_done(cli, resume_later):
    ledger = cli.ledger()
    run = stopped_run(ledger)
    resume_later(ledger, reopen_and_finish)

    result = cli("close", "December 2024", "--wait", "--timeout", "20", LEDGERBRIDGE_CONNECTION=CONN)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"close run {run.id} resumed for 'December 2024' on {CONN} as attempt 2\n"
    )
    assert f"close {run.id}: December 2024 ({CONN}) - done, attempt 2" in flat(result.stdout)
    assert f"done: close run {run.id} of 'December 2024' posted, marked and reconciled (attempt 2)" in flat(
        result.stdout
    )
    assert "needs attention" not in result.output
    assert STOP not in result.output


def test_close_wait_never_reports_the_previous_attempt_stop_when_the_new_attempt_has_not_begun(
    cli, resume_later
):
    ledger = cli.ledger()
    run = stopped_run(ledger)
    resume_later(ledger, None)

    result = cli("close", "December 2024", "--wait", "--timeout", "1", LEDGERBRIDGE_CONNECTION=CONN)

    assert result.exit_code == 1
    assert (
        f"close {run.id}: December 2024 ({CONN}) - needs_attention (attempt 1); attempt 2 has not started yet"
        in flat(result.stdout)
    )
    assert (
        f"close run {run.id}: attempt 2 has not started yet (no worker has taken the resume); attempt 1 is "
        "needs_attention"
    ) in flat(result.stderr)
    assert "needs attention:" not in result.output
    assert STOP not in result.output


def test_close_wait_reports_the_stop_of_the_attempt_it_started(cli, resume_later):
    ledger = cli.ledger()
    run = stopped_run(ledger)

    def reopen_and_stop(ledger: Ledger, run: CloseRun) -> None:
        ledger.update_close_run(run.id or 0, status="running", error=None,
                                details_update=details_update(next_attempt(run)))  # fmt: skip
        ledger.update_close_run(run.id or 0, status="needs_attention", error="still no rate")

    resume_later(ledger, reopen_and_stop)

    result = cli("close", "December 2024", "--wait", "--timeout", "20", LEDGERBRIDGE_CONNECTION=CONN)

    assert result.exit_code == 1
    assert flat(result.stderr) == "needs attention (attempt 2): still no rate"
    assert f"close {run.id}: December 2024 ({CONN}) - needs_attention, attempt 2" in flat(result.stdout)


def test_close_status_shows_the_attempt_of_the_run_and_of_its_outcome(cli):
    ledger = cli.ledger()
    run = stopped_run(ledger, attempt=3)

    shown = cli("close-status", str(run.id), LEDGERBRIDGE_CONNECTION=CONN)
    listed = cli("close-status", LEDGERBRIDGE_CONNECTION=CONN)

    assert shown.exit_code == 1
    assert f"close {run.id}: December 2024 ({CONN}) - needs_attention, attempt 3" in flat(shown.stdout)
    assert flat(shown.stderr) == f"needs attention (attempt 3): {STOP}"
    lines = listed.stdout.splitlines()
    header = next([c.strip() for c in line.split("┃")[1:-1]] for line in lines if "status" in line)
    row = next([c.strip() for c in line.split("│")[1:-1]] for line in lines if "December" in line)
    assert dict(zip(header, row, strict=True)) | {"started": ""} == {
        "id": str(run.id), "period": "December 2024", "kind": "close", "status": "needs_attention",
        "attempt": "3", "step": "trial_balance", "journal run": "", "started": "", "finished": "",
    }  # fmt: skip
