"""Manual journal entries waiting for a second person (shared.journal_requests), over a real SQLite
ledger: the states a request goes through, each refusal, and a Zuora error that leaves it waiting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.errors import Transient
from shared.journal_entry import idempotency_parts
from shared.journal_requests import RequestRefused, decide_entry, request_entry
from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger

ENTRY = {
    "accountingPeriodName": "December 2024",
    "journalEntryDate": "2024-12-31",
    "currency": "USD",
    "journalEntryItems": [
        {"accountingCodeName": "Accounts Receivable", "type": "Debit", "amount": Decimal("10.50")},
        {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": Decimal("10.50")},
    ],
}


@pytest.fixture
def ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    made = Ledger.from_url(url)
    yield made
    made.dispose()


class Zuora:
    """What decide_entry is given: a check with set problems and a create that records its calls."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.created: list[tuple[dict, tuple[str, str]]] = []
        self.fail_with: Exception | None = None

    def check(self, entry):
        return list(self.problems)

    def create(self, entry, key):
        if self.fail_with is not None:
            raise self.fail_with
        self.created.append((dict(entry), key))
        return f"JE-{len(self.created):08d}"


def decide(ledger, zuora, request_id, **kwargs):
    return decide_entry(ledger, request_id, check=zuora.check, create=zuora.create, **kwargs)


def test_a_request_waits_with_its_notice_and_the_exact_amounts(ledger):
    row = request_entry(ledger, "acme", ENTRY, user="ana")

    stored = ledger.get_journal_request(row.id)
    assert (stored.status, stored.requested_by) == ("awaiting_approval", "ana")
    assert stored.entry["journalEntryItems"][0]["amount"] == Decimal("10.50")
    assert stored.fingerprint == idempotency_parts(ENTRY)[1]
    (notice,) = ledger.notices_of(f"journal-request:{row.id}")
    assert notice.event == "journal_entry.awaiting_approval"
    assert notice.connection == "acme"


def test_the_asker_and_a_silent_rejection_are_refused(ledger):
    row = request_entry(ledger, "acme", ENTRY, user="ana")
    zuora = Zuora()

    with pytest.raises(RequestRefused, match="ana asked for journal entry request"):
        decide(ledger, zuora, row.id, user="ana", approve=True, comment="")
    with pytest.raises(RequestRefused, match="a rejection needs a comment"):
        decide(ledger, zuora, row.id, user="ben", approve=False, comment="")
    assert ledger.get_journal_request(row.id).status == "awaiting_approval"
    assert zuora.created == []


def test_an_approval_creates_it_once_with_its_content_key(ledger):
    row = request_entry(ledger, "acme", ENTRY, user="ana")
    zuora = Zuora()

    done = decide(ledger, zuora, row.id, user="ben", approve=True, comment="ok")

    assert (done.status, done.zuora_number, done.decided_by, done.comment) == (
        "created",
        "JE-00000001",
        "ben",
        "ok",
    )
    assert [key for _, key in zuora.created] == [idempotency_parts(ENTRY)]
    with pytest.raises(RequestRefused, match="is created, not awaiting approval"):
        decide(ledger, zuora, row.id, user="cy", approve=True, comment="")
    assert len(zuora.created) == 1


def test_an_entry_that_no_longer_passes_its_check_fails_without_being_created(ledger):
    row = request_entry(ledger, "acme", ENTRY, user="ana")
    zuora = Zuora()
    zuora.problems = ['accounting period "December 2024" is Closed: a journal entry needs an Open period']

    done = decide(ledger, zuora, row.id, user="ben", approve=True, comment="")

    assert done.status == "failed"
    assert done.error == zuora.problems[0]
    assert zuora.created == []


def test_a_zuora_error_leaves_the_request_waiting_and_a_second_approval_creates_it(ledger):
    row = request_entry(ledger, "acme", ENTRY, user="ana")
    zuora = Zuora()
    zuora.fail_with = Transient("503 from Zuora", api="zuora", status=503)

    with pytest.raises(RequestRefused, match="It waits for approval again; approving it again is safe"):
        decide(ledger, zuora, row.id, user="ben", approve=True, comment="")
    waiting = ledger.get_journal_request(row.id)
    assert (waiting.status, waiting.error) == ("awaiting_approval", "zuora: 503 from Zuora")

    zuora.fail_with = None
    done = decide(ledger, zuora, row.id, user="ben", approve=True, comment="")
    assert done.status == "created" and done.error is None


def test_a_rejection_creates_nothing(ledger):
    row = request_entry(ledger, "acme", ENTRY, user="ana")
    zuora = Zuora()

    done = decide(ledger, zuora, row.id, user="ben", approve=False, comment="wrong period")

    assert (done.status, done.comment) == ("rejected", "wrong period")
    assert zuora.created == []
