from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    """A migrated SQLite ledger of its own."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    made = Ledger.from_url(url)
    yield made
    made.dispose()
