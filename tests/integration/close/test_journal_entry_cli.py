"""`ledgerbridge journal-entry create` against the Zuora sandbox over loopback HTTP."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.redis]

ENTRY = {
    "accountingPeriodName": "December 2024",
    "journalEntryDate": "2024-12-31",
    "currency": "USD",
    "notes": "Year-end accrual",
    "segments": [{"segmentName": "Region", "segmentValue": "North America"}],
    "journalEntryItems": [
        {
            "accountingCodeName": "Accounts Receivable",
            "type": "Debit",
            "amount": 400.90,
            "homeCurrencyAmount": 400.90,
        },
        {
            "accountingCodeName": "Sales Revenue",
            "type": "Credit",
            "amount": 400.90,
            "homeCurrencyAmount": 400.90,
        },
    ],
}


def write(env, name, entry):
    path = env.tmp / name
    path.write_text(json.dumps(entry, indent=2))
    return path


def test_journal_entry_create_prints_the_number_and_is_idempotent(make_env):
    env = make_env()
    path = write(env, "accrual.json", ENTRY)

    first = env.cli("journal-entry", "create", str(path), "--home-currency-amounts")
    second = env.cli("journal-entry", "create", str(path), "--home-currency-amounts")

    assert first.returncode == 0, first.stderr
    number = first.stdout.strip()
    assert number.startswith("JE-")
    assert second.stdout.strip() == number
    (created,) = [e for e in env.zuora_state("journal-entries") if e["number"] == number]
    assert created["notes"] == "Year-end accrual"
    assert [(i["accountingCodeName"], i["type"], i["amount"]) for i in created["journalEntryItems"]] == [
        ("Accounts Receivable", "Debit", 400.9),
        ("Sales Revenue", "Credit", 400.9),
    ]


def test_journal_entry_create_lists_every_problem_and_creates_nothing(make_env):
    env = make_env()
    bad = {
        **ENTRY,
        "accountingPeriodName": "November 2024",
        "currency": "JPY",
        "journalEntryItems": [
            {"accountingCodeName": "Accounts Receivable", "type": "Debit", "amount": 10},
            {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": 9.99},
        ],
    }
    path = write(env, "bad.json", bad)

    result = env.cli("journal-entry", "create", str(path))

    assert result.returncode == 1
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert lines == [
        f"{path} is not a valid journal entry (3 problems):",
        "- currency JPY is not in the mapping file's [currencies]",
        "- debits 10 != credits 9.99 JPY (difference 0.01): a journal entry must balance",
        '- accounting period "November 2024" is Closed: a journal entry needs an Open period',
    ]
    assert env.zuora_state("journal-entries") == []


def test_journal_entry_create_dry_run_validates_only(make_env):
    env = make_env()
    path = write(env, "accrual.json", ENTRY)

    result = env.cli("journal-entry", "create", str(path), "--dry-run", "--home-currency-amounts")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path} is valid; nothing was created (--dry-run)"
    assert env.zuora_state("journal-entries") == []


def test_journal_entry_create_unreadable_file_is_bad_usage(make_env):
    env = make_env()
    path = env.tmp / "broken.json"
    path.write_text("{")

    result = env.cli("journal-entry", "create", str(path))

    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


def _add_approver(env, name: str) -> None:
    import subprocess
    import sys

    from tests.integration.close.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "user", "add", name, "--role", "approver", "--password-stdin"],
        cwd=ROOT,
        env=env.env,
        input="correct horse battery staple\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_with_approval_all_an_entry_waits_for_a_second_person_then_is_created_once(make_env):
    env = make_env()
    env.env["LEDGERBRIDGE_APPROVAL"] = "all"
    _add_approver(env, "ana")
    _add_approver(env, "ben")
    path = write(env, "accrual.json", ENTRY)
    before = len(env.zuora_state("journal-entries"))

    asked = env.cli("journal-entry", "create", str(path), "--home-currency-amounts", "--as", "ana")

    assert asked.returncode == 0, asked.stderr
    (request,) = env.ledger.list_journal_requests(env.connection)
    assert (request.status, request.requested_by) == ("awaiting_approval", "ana")
    assert f"journal entry request {request.id} waits for approval" in asked.stdout
    assert len(env.zuora_state("journal-entries")) == before  # nothing created yet
    by_asker = env.cli("journal-entry", "approve", str(request.id), "--as", "ana")
    assert by_asker.returncode == 1 and "ana asked for journal entry request" in by_asker.stderr
    assert "another approver must" in by_asker.stderr

    approved = env.cli(
        "journal-entry", "approve", str(request.id), "--as", "ben", "--comment", "accrual agreed"
    )

    assert approved.returncode == 0, approved.stderr
    number = approved.stdout.strip().splitlines()[-1]
    assert number.startswith("JE-")
    (created,) = [e for e in env.zuora_state("journal-entries") if e["number"] == number]
    assert created["notes"] == "Year-end accrual"
    request = env.ledger.get_journal_request(request.id)
    assert (request.status, request.decided_by, request.zuora_number) == ("created", "ben", number)
    again = env.cli("journal-entry", "approve", str(request.id), "--as", "ben")
    assert again.returncode == 1 and "is created, not awaiting approval" in again.stderr
    timeline = [(e.actor, e.message) for e in env.audit(f"journal-request:{request.id}")]
    assert timeline[0][0] == "ana" and timeline[0][1].startswith(
        "requested by ana: a manual journal entry of 2 items"
    )
    assert ("ben", "approved by ben: accrual agreed") in timeline
    assert timeline[-1] == (None, f"created in Zuora as {number}")
    listed = env.cli("journal-entry", "requests")
    assert listed.returncode == 0 and number in listed.stdout


def test_with_approval_all_a_rejected_entry_is_never_created(make_env):
    env = make_env()
    env.env["LEDGERBRIDGE_APPROVAL"] = "all"
    _add_approver(env, "ben")
    path = write(env, "accrual.json", ENTRY)
    before = len(env.zuora_state("journal-entries"))
    assert (
        env.cli("journal-entry", "create", str(path), "--home-currency-amounts", "--as", "ana").returncode
        == 0
    )
    (request,) = env.ledger.list_journal_requests(env.connection)

    no_comment = env.cli("journal-entry", "reject", str(request.id), "--as", "ben", "--comment", " ")
    rejected = env.cli("journal-entry", "reject", str(request.id), "--as", "ben", "--comment", "wrong period")

    assert no_comment.returncode == 1 and "a rejection needs a comment" in no_comment.stderr
    assert rejected.returncode == 0, rejected.stderr
    assert env.ledger.get_journal_request(request.id).status == "rejected"
    assert len(env.zuora_state("journal-entries")) == before
