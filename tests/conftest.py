"""Fixtures shared by every test area.

Real services: Redis at LEDGERBRIDGE_TEST_REDIS_URL (default redis://127.0.0.1:6379/9) and
PostgreSQL at LEDGERBRIDGE_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
Each Postgres-backed test gets a database of its own, dropped afterwards. fakeredis is for unit
tests only.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
import sqlalchemy as sa

from sandbox.contract import ENABLE_VARIABLE, LOG_VARIABLE, Violation

# Every sandbox a test starts (in this process or a child) checks its traffic against the vendors'
# own API descriptions and appends each violation to one file; a violation fails the test that
# caused it (see vendor_contracts below).
os.environ[ENABLE_VARIABLE] = "1"
CONTRACT_LOG = Path(tempfile.mkdtemp(prefix="ledgerbridge-contracts-")) / "violations.jsonl"
CONTRACT_LOG.touch()
os.environ[LOG_VARIABLE] = str(CONTRACT_LOG)

REDIS_URL = os.environ.get("LEDGERBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
POSTGRES_URL = os.environ.get(
    "LEDGERBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def vendor_contracts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which a sandbox saw a request or gave an answer that the vendor's own
    description does not allow (tests marked ``vendor_contract_exempt`` send such traffic on
    purpose, to test the sandbox's errors)."""
    start = CONTRACT_LOG.stat().st_size
    yield
    with CONTRACT_LOG.open("rb") as log:
        log.seek(start)
        found = [
            Violation(**{**json.loads(line), "problems": tuple(json.loads(line)["problems"])}) for line in log
        ]
    if found and request.node.get_closest_marker("vendor_contract_exempt") is None:
        shown = "\n".join(str(v) for v in found[:20])
        more = f"\n... and {len(found) - 20} more" if len(found) > 20 else ""
        pytest.fail(
            f"{len(found)} exchanges break the vendors' API descriptions:\n{shown}{more}", pytrace=False
        )


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis at {REDIS_URL} is not answering ({exc}); run scripts/services")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def any_redis(request: pytest.FixtureRequest) -> Iterator[fakeredis.FakeRedis | redis.Redis]:
    """A fakeredis client, then the real Redis: Lua scripts and limiters run on both. Keys a test
    writes to the real one must carry a unique prefix (``connection_name``)."""
    if request.param == "fakeredis":
        yield request.getfixturevalue("fake_redis")
    else:
        yield request.getfixturevalue("real_redis")


@pytest.fixture
def connection_name() -> str:
    """A connection name unique to this test, so Redis keys never collide between tests."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = f"lb_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not answering ({exc}); run scripts/services")
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
