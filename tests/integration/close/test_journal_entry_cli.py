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
