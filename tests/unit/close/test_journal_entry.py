"""Manual summary journal entries: every problem listed at once, then an idempotent create."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared import journal_entry as je
from shared.mapping import load_mapping


def good_entry(**changes):
    entry = {
        "accountingPeriodName": "December 2024",
        "journalEntryDate": "2024-12-31",
        "currency": "USD",
        "notes": "Accrued revenue",
        "segments": [{"segmentName": "Region", "segmentValue": "North America"}],
        "journalEntryItems": [
            {"accountingCodeName": "Accounts Receivable", "type": "Debit", "amount": Decimal("400.90"),
             "homeCurrencyAmount": Decimal("400.90")},
            {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": Decimal("400.90"),
             "homeCurrencyAmount": Decimal("400.90")},
        ],
    }  # fmt: skip
    entry.update(changes)
    return entry


@pytest.fixture
def mapping(harness):
    return load_mapping(harness.mapping_path)


def test_valid_entry_has_no_problems(mapping):
    assert je.validate_entry(good_entry(), mapping=mapping, home_currency_amounts=True) == []


def test_every_problem_is_listed_at_once(mapping):
    entry = {
        "journalEntryDate": "31/12/2024",
        "currency": "JPY",
        "colour": "blue",
        "transferredToAccounting": "Maybe",
        "journalEntryItems": [
            {"accountingCodeName": "Accounts Receivable", "type": "Debit", "amount": Decimal("100.00")},
            {"accountingCodeName": "Mystery Income", "type": "Credit", "amount": Decimal("99.99"),
             "homeCurrencyAmount": Decimal("99.99")},
            {"type": "Sideways", "amount": "-5"},
        ],
    }  # fmt: skip

    problems = je.validate_entry(entry, mapping=mapping, home_currency_amounts=False)

    assert problems == [
        "accountingPeriodName is required",
        "unknown field 'colour' (custom fields end with __c)",
        "journalEntryDate must be a date YYYY-MM-DD, not '31/12/2024'",
        "currency JPY is not in the mapping file's [currencies]",
        "transferredToAccounting must be one of Error, Ignore, No, Processing, Yes",
        "journalEntryItems[1].accountingCodeName 'Mystery Income' is not in the mapping file's [accounts], so "
        "the close could not post it",
        "journalEntryItems[1].homeCurrencyAmount must not be sent: no home-currency conversion is configured "
        "(pass --home-currency-amounts if the tenant has it)",
        "journalEntryItems[2].accountingCodeName is required",
        "journalEntryItems[2].type must be Debit or Credit, not 'Sideways'",
        "journalEntryItems[2].amount must be positive, not -5",
        "debits 100.00 != credits 99.99 JPY (difference 0.01): a journal entry must balance",
    ]


def test_home_currency_amounts_required_on_every_item_when_configured(mapping):
    items = good_entry()["journalEntryItems"]
    del items[1]["homeCurrencyAmount"]
    items[0]["homeCurrencyAmount"] = Decimal("400.91")

    problems = je.validate_entry(
        good_entry(journalEntryItems=items), mapping=mapping, home_currency_amounts=True
    )

    assert problems == [
        "journalEntryItems[1].homeCurrencyAmount is required: the tenant converts to a home currency",
        "home-currency debits 400.91 != credits 0 (difference 400.91): a journal entry must balance",
    ]


def test_entry_file_amounts_are_read_as_exact_decimals(tmp_path):
    path = tmp_path / "entry.json"
    path.write_text('{"currency": "USD", "journalEntryItems": [{"amount": 0.1}, {"amount": 0.2}]}')

    entry = je.read_entry_file(path)

    assert entry["journalEntryItems"][0]["amount"] + entry["journalEntryItems"][1]["amount"] == Decimal("0.3")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold one JSON object (the journal entry), not list"),
    ],
)
def test_unreadable_entry_file_is_refused(tmp_path, content, message):
    path = tmp_path / "entry.json"
    path.write_text(content)

    with pytest.raises(je.EntryFileError) as info:
        je.read_entry_file(path)

    assert message in str(info.value)


def test_idempotency_key_follows_the_content_not_its_layout():
    same = json.loads(json.dumps(good_entry(), default=str), parse_float=Decimal)
    for item in same["journalEntryItems"]:
        item["amount"] = Decimal(item["amount"])
        item["homeCurrencyAmount"] = Decimal(item["homeCurrencyAmount"])

    assert je.idempotency_parts(good_entry()) == je.idempotency_parts(dict(reversed(list(same.items()))))
    assert je.idempotency_parts(good_entry()) != je.idempotency_parts(good_entry(notes="other"))


def test_closed_period_is_a_problem(harness, mapping):
    problems = je.check_entry(
        harness.zuora,
        good_entry(accountingPeriodName="November 2024"),
        mapping=mapping,
        home_currency_amounts=True,
    )

    assert problems == ['accounting period "November 2024" is Closed: a journal entry needs an Open period']


def test_unknown_period_is_a_problem(harness, mapping):
    problems = je.check_entry(
        harness.zuora, good_entry(accountingPeriodName="Dec'99"), mapping=mapping, home_currency_amounts=True
    )

    assert problems == ['there is no accounting period named "Dec\'99" in Zuora']


def test_create_twice_with_the_same_content_books_one_entry(harness, mapping):
    first = je.create_entry(harness.zuora, good_entry(), mapping=mapping, home_currency_amounts=True)
    second = je.create_entry(harness.zuora, good_entry(), mapping=mapping, home_currency_amounts=True)

    assert first == second
    assert first.startswith("JE-")
    created = [e for e in harness.zuora_entries() if e["number"] == first]
    assert len(created) == 1
    assert [
        (i["accountingCodeName"], i["type"], Decimal(str(i["amount"])))
        for i in created[0]["journalEntryItems"]
    ] == [
        ("Accounts Receivable", "Debit", Decimal("400.90")),
        ("Sales Revenue", "Credit", Decimal("400.90")),
    ]
    (post, replay) = harness.requests("POST", "/v1/journal-entries")
    keys = [{k.lower(): v for k, v in e.request_headers.items()}["idempotency-key"] for e in (post, replay)]
    assert keys[0] == keys[1]


def test_create_refuses_an_invalid_entry_without_calling_zuora(harness, mapping):
    with pytest.raises(je.InvalidEntry) as info:
        je.create_entry(
            harness.zuora, good_entry(currency="JPY"), mapping=mapping, home_currency_amounts=True
        )

    assert info.value.problems == ("currency JPY is not in the mapping file's [currencies]",)
    assert harness.requests("POST", "/v1/journal-entries") == []
