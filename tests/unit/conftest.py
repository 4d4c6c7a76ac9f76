from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from shared import ports
from shared.ledger.migrate import upgrade


@pytest.fixture
def ports_on_sqlite(tmp_path, fake_redis: fakeredis.FakeRedis, monkeypatch) -> Iterator[str]:
    """``shared.ports`` pointed at a fresh migrated SQLite ledger (its URL is yielded) and at
    ``fake_redis``; every client the test made is closed afterwards."""
    url = f"sqlite:///{tmp_path / 'ports.db'}"
    upgrade(url)
    monkeypatch.setenv("LEDGERBRIDGE_DATABASE_URL", url)
    ports.reset_for_tests()
    ports._registry.redis = fake_redis
    try:
        yield url
    finally:
        ports.reset_for_tests()
