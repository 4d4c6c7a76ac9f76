"""The summary-GL close end to end: the `ledgerbridge` command, a real Celery worker process,
real Redis, the ledger (SQLite and PostgreSQL), and both sandboxes over loopback HTTP."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from shared.close.attempts import run_attempt
from shared.close.state import journal_numbers
from shared.mapping import journal_from_summary_entry, load_mapping

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def entries_of(env, run):
    numbers = set(journal_numbers(run))
    return sorted(
        (e for e in env.zuora_state("journal-entries") if e["number"] in numbers), key=lambda e: e["number"]
    )


def expected_lines(entry, mapping):
    return sorted(
        (line.account, line.debit, line.credit) for line in journal_from_summary_entry(entry, mapping).lines
    )


def acumatica_lines(batch):
    return sorted(
        (d["Account"], Decimal(str(d.get("DebitAmount") or 0)), Decimal(str(d.get("CreditAmount") or 0)))
        for d in batch["Details"]
    )


def yes_puts(env, number):
    """The PUT transferredToAccounting=Yes exchanges the worker made for entry ``number``."""
    return [
        e
        for e in env.audit(f"journal_entry:{number}")
        if e.kind == "http"
        and e.method == "PUT"
        and "basic-information" in (e.url or "")
        and json.loads(e.request_body or "{}").get("transferredToAccounting") == "Yes"
    ]


def assert_acumatica_holds_each_entry_once(env, run):
    mapping = load_mapping(env.mapping)
    entries = entries_of(env, run)
    batches = env.acumatica_batches()
    assert run.status == "done", run.error
    assert len(entries) == len(journal_numbers(run)) > 0
    assert len(batches) == len(entries)
    for entry in entries:
        number = entry["number"]
        mine = [b for b in batches if str(b["Description"]).startswith(number + " ")]
        assert len(mine) == 1, f"{number} is in Acumatica {len(mine)} times"
        assert mine[0]["Module"] == "GL"
        assert mine[0]["CurrencyID"] == entry["currency"]
        assert acumatica_lines(mine[0]) == expected_lines(entry, mapping)
        assert entry["transferredToAccounting"] == "Yes"
        # Zuora saw exactly one Yes. (The audit may miss the killed worker's PUT: its row is written
        # after the answer, and the process can die in between.)
        assert entry["_sandbox"]["yesWrites"] == 1, (
            f"{number} was marked Yes {entry['_sandbox']['yesWrites']} times"
        )
        assert len(yes_puts(env, number)) <= 1
        row = env.ledger.get_record(env.connection, "journal_entry", number)
        assert (row.state, row.erp_ref) == ("marked", f"GL/{mine[0]['BatchNbr']}")
    assert run.details["reconcile"]["differences"] == []


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_close_command_over_http_with_acumatica_and_a_real_worker(make_env, request, database):
    database_url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    env = make_env(database_url)
    env.worker.start()

    result = env.cli("close", "December 2024", "--wait", "--timeout", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    run = env.ledger.latest_close_runs(env.connection)[0]
    assert result.stdout.startswith(f"close run {run.id} started for 'December 2024' on {env.connection}\n")
    assert f"done: close run {run.id} of 'December 2024' posted, marked and reconciled" in result.stdout
    assert_acumatica_holds_each_entry_once(env, run)
    period = next(p for p in env.zuora_state("accounting-periods") if p["name"] == "December 2024")
    assert period["status"] == "Closed"
    assert [n["event"] for n in env.webhook.wait_for(1)] == ["close.completed"]
    assert env.webhook.texts()[0].startswith(
        f'ledgerbridge close of "December 2024" on {env.connection} is done (close run {run.id}): '
        f"{len(journal_numbers(run))} journal entries of journal run {run.journal_run_number} posted to Acumatica"
    )


def test_close_over_http_with_the_file_export(make_env):
    env = make_env(erp="file")
    env.worker.start()
    run_id = env.open()

    env.resume(run_id)
    run = env.wait_status(run_id)

    assert run.status == "done", run.error
    mapping = load_mapping(env.mapping)
    rows = [
        json.loads(line) for line in (env.export_dir / "2024-12" / "journal.jsonl").read_text().splitlines()
    ]
    entries = entries_of(env, run)
    assert sorted({r["natural_key"] for r in rows}) == [e["number"] for e in entries]
    for entry in entries:
        mine = [r for r in rows if r["natural_key"] == entry["number"]]
        assert sorted(
            (r["account"], Decimal(r["debit"]), Decimal(r["credit"])) for r in mine
        ) == expected_lines(entry, mapping)
        assert entry["transferredToAccounting"] == "Yes"
        assert len(yes_puts(env, entry["number"])) == 1
    assert run.details["reconcile"]["differences"] == []
    manifest = json.loads((env.export_dir / "2024-12" / "manifest.json").read_text())
    assert manifest["files"]["journal.csv"]["entries"] == len(entries)


KILL_POINTS = [
    "after:lookup",
    "trial_balance:started",
    "close_period:closed",
    "journal_run:created",
    "after:fetch",
    "before:post",
    "posting:2",
    "posted:3",
    "marking:2",
    "after:mark",
    "after:verify",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_worker_killed_mid_close_then_restarted_and_re_enqueued_posts_each_entry_once(make_env, point):
    env = make_env()
    run_id = env.open()
    env.worker.start(crash_at=point)
    env.resume(run_id)

    assert env.worker.wait_exit(timeout=60) != 0  # SIGKILLed at the crash point
    assert env.ledger.get_close_run(run_id).status == "running"
    env.worker.start()
    env.resume(run_id)
    run = env.wait_status(run_id)

    assert_acumatica_holds_each_entry_once(env, run)
    assert len(env.zuora_state("journal-runs")) == 1


def test_acumatica_commit_then_dropped_connection_is_found_by_natural_key(make_env):
    env = make_env()
    response = httpx.post(
        f"{env.acumatica.url}/_sandbox/faults",
        json={
            "rules": [
                {"kind": "commit_then_drop", "method": "PUT", "entity": "JournalTransaction", "next": 2}
            ]
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    env.worker.start()
    run_id = env.open()

    env.resume(run_id)
    run = env.wait_status(run_id)

    assert_acumatica_holds_each_entry_once(env, run)
    found = [
        number
        for number in journal_numbers(run)
        if any(
            (e.message or "").startswith("posting -> posted: in doubt; found in the ERP as GL/")
            for e in env.audit(f"journal_entry:{number}")
        )
    ]
    assert len(found) == 2  # both dropped creates were found by their JE number, not re-posted


def test_second_close_of_the_same_period_attaches_to_the_running_one(make_env):
    env = make_env()
    env.zuora_control("config", {"trial_balance": {"pending_seconds": 1.5, "processing_seconds": 1.5}})
    env.worker.start()
    first = env.cli("close", "December 2024")
    assert first.returncode == 0, first.stderr
    run_id = env.ledger.latest_close_runs(env.connection)[0].id
    env.wait_until(lambda: env.ledger.get_close_run(run_id).details.get("trial_balance", {}).get("polls"))

    second = env.cli("close", "December 2024")

    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(f"close run {run_id} attached for 'December 2024'")
    run = env.wait_status(run_id)
    assert_acumatica_holds_each_entry_once(env, run)
    assert len(env.zuora_state("journal-runs")) == 1
    assert len(env.ledger.latest_close_runs(env.connection)) == 1


def test_close_command_exits_1_with_the_trial_balance_error_and_posts_nothing(make_env):
    env = make_env()
    message = (
        "Error creating the trial balance: exchange rate from USD to GBP on 12/31/2024 is not available."
    )
    env.zuora_control("periods/December 2024/fail-trial-balance", {"message": message})
    env.worker.start()

    result = env.cli("close", "December 2024", "--wait", "--timeout", "60")

    assert result.returncode == 1, result.stdout + result.stderr
    run = env.ledger.latest_close_runs(env.connection)[0]
    expected = (
        f'the trial balance of accounting period "December 2024" failed in Zuora before closing it: {message.rstrip(".")}. '
        "The period was not closed and nothing was posted or marked. Fix the cause in Zuora (for example "
        'import the missing exchange rate), then run `ledgerbridge close "December 2024"` again.'
    )
    assert run.error == expected
    assert " ".join(result.stderr.split()) == f"needs attention: {expected}"
    env.webhook.wait_for(1)
    assert env.webhook.texts() == [
        f'ledgerbridge close of "December 2024" on {env.connection} needs attention (close run {run.id}): '
        f"{expected}"
    ]
    assert env.webhook.received[0]["event"] == "close.trial_balance_error"
    assert env.acumatica_batches() == []
    assert env.zuora_state("journal-runs") == []

    status = env.cli("close-status", str(run.id))
    assert status.returncode == 1
    assert "trial balance" in status.stdout


def test_dry_run_command_prints_what_would_be_posted_and_posts_nothing(make_env):
    env = make_env()
    env.worker.start()

    result = env.cli("close", "December 2024", "--dry-run", "--timeout", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    run = env.ledger.latest_close_runs(env.connection)[0]
    assert run.status == "dry_run"
    assert "would be posted" in result.stdout
    for number in journal_numbers(run):
        assert number in result.stdout
    assert f"dry run {run.id}: nothing was posted or marked" in result.stdout
    assert env.acumatica_batches() == []
    assert {r["status"] for r in env.zuora_state("journal-runs")} == {"Cancelled"}
    assert {p["status"] for p in env.zuora_state("accounting-periods") if p["name"] == "December 2024"} == {
        "Open"
    }


def test_close_wait_after_the_trial_balance_is_fixed_follows_the_new_attempt_to_done(make_env):
    env = make_env()
    message = (
        "Error creating the trial balance: exchange rate from USD to GBP on 12/31/2024 is not available."
    )
    env.zuora_control("periods/December 2024/fail-trial-balance", {"message": message})
    env.worker.start()
    first = env.cli("close", "December 2024", "--wait", "--timeout", "60")
    assert first.returncode == 1, first.stdout + first.stderr
    stopped = env.ledger.latest_close_runs(env.connection)[0]
    assert (stopped.status, stopped.step, run_attempt(stopped)) == ("needs_attention", "trial_balance", 1)
    # Fixed in Zuora; the new trial balance takes a moment, as Zuora's does.
    fixed = httpx.delete(f"{env.zuora.url}/_sandbox/periods/December 2024/fail-trial-balance", timeout=10)
    assert fixed.status_code == 200, fixed.text
    env.zuora_control("config", {"trial_balance": {"pending_seconds": 1.0, "processing_seconds": 1.0}})

    second = env.cli("close", "December 2024", "--wait", "--timeout", "60")

    assert second.returncode == 0, second.stdout + second.stderr
    run = env.ledger.get_close_run(stopped.id)
    assert (run.status, run_attempt(run)) == ("done", 2)
    assert second.stdout.startswith(
        f"close run {run.id} resumed for 'December 2024' on {env.connection} as attempt 2\n"
    )
    assert f"close {run.id}: December 2024 ({env.connection}) - done, attempt 2" in second.stdout
    assert (
        f"done: close run {run.id} of 'December 2024' posted, marked and reconciled (attempt 2)"
        in second.stdout
    )
    assert "needs attention" not in second.stdout + second.stderr
    assert message not in second.stdout + second.stderr
    assert_acumatica_holds_each_entry_once(env, run)
    assert [n["event"] for n in env.webhook.wait_for(2)] == ["close.trial_balance_error", "close.completed"]
    assert [e.message for e in env.audit(f"close:{run.id}") if e.kind == "note"] == [
        "attempt 1: started at lookup",
        f"attempt 1: stopped at trial_balance: {stopped.error}",
        "attempt 2 started: resumed at trial_balance after attempt 1 needed attention",
        "attempt 2: close finished (done)",
    ]
    status = env.cli("close-status", str(run.id))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "- done, attempt 2" in status.stdout
    explained = env.cli("explain", f"close:{run.id}")
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "attempt 2 started: resumed at trial_balance after attempt 1 needed attention" in explained.stdout
