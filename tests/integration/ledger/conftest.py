"""A migrated ledger on SQLite and on PostgreSQL (via the ``database_url`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    upgrade(database_url)
    ledger = Ledger.from_url(database_url)
    yield ledger
    ledger.dispose()
