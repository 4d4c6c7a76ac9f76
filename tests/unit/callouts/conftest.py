from __future__ import annotations

import pytest

from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger


@pytest.fixture
def ledger(tmp_path):
    """A migrated SQLite ledger in the test's folder."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    ledger = Ledger.from_url(url)
    yield ledger
    ledger.dispose()
