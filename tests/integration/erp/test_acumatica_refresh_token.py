# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""A deployment that signs in to Acumatica with a rotating OAuth refresh token alone, against the
sandbox over HTTP, with the real Redis and a SQLite ledger, built by ``shared.ports`` as the
workers build it: once from the environment (the default connection), once from the ledger (a
stored connection).

The sandbox rotates refresh tokens as Acumatica does (acumatica-api.md section 2.2): each refresh
answers with a new one and the one it was given stops working. So the configured token is spent
after the first sign-in, and only the newest one gets the deployment back in after Redis has lost
its copy: the ledger's.

Redis keeps nothing on disk on these machines, so a flush is what a Redis restart looks like. These
tests use a Redis database of their own (12) and flush only that one (``FLUSHDB``): ``FLUSHALL``
would also empty the developer's database and every other test's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from cli.main import app
from sandbox.acumatica import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_ENDPOINT,
    DEFAULT_PASSWORD,
    DEFAULT_TENANT,
    DEFAULT_USERNAME,
    AcumaticaBackend,
    create_app,
)
from sandbox.server import ThreadedServer
from shared import ports
from shared.connections import AcumaticaTarget, Connection, ZuoraTarget
from shared.ledger.errors import SecretKeyError
from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis

FLUSHED_REDIS = REDIS_URL.rsplit("/", 1)[0] + "/12"
REPO = Path(__file__).resolve().parents[3]


def issue_refresh_token(url: str) -> str:
    """What an engineer does once: a password grant with ``offline_access`` for a refresh token."""
    response = httpx.post(
        url + "/identity/connect/token",
        data={
            "grant_type": "password",
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            "scope": "api offline_access",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


def refused(url: str, token: str) -> bool:
    response = httpx.post(
        url + "/identity/connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
    )
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


@dataclass
class Deployment:
    """One connection signing in with a refresh token alone; ``restart`` is every process
    restarting with a changed environment."""

    kind: str
    name: str
    backend: AcumaticaBackend
    url: str
    database_url: str
    redis: redis.Redis
    monkeypatch: pytest.MonkeyPatch
    configured: str
    key: str

    def restart(self, **env: str) -> None:
        for variable, value in env.items():
            self.monkeypatch.setenv(variable, value)
        ports.reset_for_tests()

    def erp(self):
        return ports.erp(ports.connection(self.name))

    def call(self) -> None:
        """One ERP call of a worker: a read that needs a signed-in session."""
        assert self.erp().find_document("customer", "NO-SUCH-CUSTOMER") is None

    def call_in_a_worker_then_kill_it(self) -> None:
        """:meth:`call` in a worker process of its own, killed afterwards: it never logs out, so
        its session stays in Redis (a worker that is still running looks the same to the others)."""
        code = (
            "import os, sys\n"
            "from shared import ports\n"
            f"found = ports.erp(ports.connection({self.name!r})).find_document('customer', 'NO-SUCH')\n"
            "ports.flush_audit()\n"
            "sys.stdout.flush()\n"
            "os._exit(0 if found is None else 1)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr.decode()

    def ledger(self) -> Ledger:
        return Ledger.from_url(self.database_url)

    def stored_token(self, *keys: str) -> str | None:
        ledger = self.ledger()
        try:
            return ledger.load_refresh_token(self.name, SecretBox(list(keys or (self.key,))))
        finally:
            ledger.dispose()

    def live_tokens(self) -> set[str]:
        """The refresh tokens the sandbox still accepts."""
        return set(self.backend.refresh_tokens)

    def tokens_issued(self) -> int:
        return int(self.backend.events["tokens_issued"])


@pytest.fixture(params=["default", "stored"])
def deployment(request, tmp_path: Path, monkeypatch, connection_name) -> Iterator[Deployment]:
    backend = AcumaticaBackend()
    server = ThreadedServer(create_app(backend)).start()
    flusher = redis.Redis.from_url(FLUSHED_REDIS)
    flusher.flushdb()  # our own database: nothing else lives in 12
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(database_url)
    key = Fernet.generate_key().decode()
    configured = issue_refresh_token(server.url)

    for variable in list(os.environ):
        if variable.startswith("LEDGERBRIDGE_") and not variable.startswith(
            ("LEDGERBRIDGE_TEST_", "LEDGERBRIDGE_SANDBOX_")
        ):
            monkeypatch.delenv(variable)
    common = {
        "LEDGERBRIDGE_DATABASE_URL": database_url,
        "LEDGERBRIDGE_REDIS_URL": FLUSHED_REDIS,
        "LEDGERBRIDGE_SECRET_KEY": key,
        "LEDGERBRIDGE_CONNECTION": connection_name,
    }
    acumatica = AcumaticaTarget(
        url=server.url,
        endpoint=DEFAULT_ENDPOINT,
        tenant=DEFAULT_TENANT,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        refresh_token=configured,
        requests_per_minute=60_000,  # the sandbox has no licence limit
    )
    if request.param == "default":
        common |= {
            "LEDGERBRIDGE_ZUORA_BASE_URL": "http://127.0.0.1:9",  # configured, never contacted
            "LEDGERBRIDGE_ZUORA_CLIENT_ID": "unused",
            "LEDGERBRIDGE_ZUORA_CLIENT_SECRET": "unused",
            "LEDGERBRIDGE_ERP": "acumatica",
            "LEDGERBRIDGE_ACUMATICA_URL": acumatica.url,
            "LEDGERBRIDGE_ACUMATICA_ENDPOINT": acumatica.endpoint,
            "LEDGERBRIDGE_ACUMATICA_TENANT": DEFAULT_TENANT,
            "LEDGERBRIDGE_ACUMATICA_CLIENT_ID": DEFAULT_CLIENT_ID,
            "LEDGERBRIDGE_ACUMATICA_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "LEDGERBRIDGE_ACUMATICA_REFRESH_TOKEN": configured,
            "LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE": "60000",
        }
    else:
        ledger = Ledger.from_url(database_url)
        zuora = ZuoraTarget(base_url="http://127.0.0.1:9", client_id="unused", client_secret="unused")
        ledger.add_connection(
            Connection(name=connection_name, zuora=zuora, erp_kind="acumatica", acumatica=acumatica),
            SecretBox([key]),
        )
        ledger.dispose()
    made = Deployment(
        kind=request.param,
        name=connection_name,
        backend=backend,
        url=server.url,
        database_url=database_url,
        redis=flusher,
        monkeypatch=monkeypatch,
        configured=configured,
        key=key,
    )
    made.restart(**common)
    try:
        yield made
    finally:
        ports.reset_for_tests()
        flusher.flushdb()
        flusher.close()
        server.stop()


def test_a_flushed_redis_signs_in_again_with_the_rotated_refresh_token_from_the_ledger(deployment):
    d = deployment
    d.call()  # the configured token is spent for the first rotated one
    first = d.stored_token()
    d.backend.expire_sessions()  # the access token ends: the next call refreshes again
    d.call()
    newest = d.stored_token()
    assert refused(d.url, d.configured)
    assert refused(d.url, first)
    assert d.live_tokens() == {newest}
    issued = d.tokens_issued()

    d.redis.flushdb()  # mid-run: the session and Redis's copy of the refresh token are gone
    d.call()

    assert d.tokens_issued() == issued + 1  # one refresh, with the ledger's token
    assert d.live_tokens() == {d.stored_token()} != {newest}
    assert d.backend.events["login_failures"] == 0
    ledger = d.ledger()
    assert ledger.refresh_token_versions() == {d.name: 3}
    ledger.dispose()


def test_a_secret_key_rotation_keeps_sign_in_working_and_every_stored_value_readable(deployment):
    d = deployment
    old, new = d.key, Fernet.generate_key().decode()
    d.call_in_a_worker_then_kill_it()  # its session and refresh token: sealed with the old key
    issued = d.tokens_issued()

    # The processes restart one by one with the new key first and the old one second.
    d.restart(LEDGERBRIDGE_SECRET_KEY=f"{new},{old}")
    d.call()
    assert d.tokens_issued() == issued  # the other worker's session still serves
    d.backend.expire_sessions()
    d.call()  # a refresh with Redis's copy of the token, sealed with the old key
    assert d.tokens_issued() == issued + 1
    newest = d.stored_token(new)  # sealed with the new key, in the ledger and in Redis
    assert d.live_tokens() == {newest}
    cached = d.redis.get(f"ledgerbridge:{d.name}:acumatica:refresh_token")
    assert Fernet(new.encode()).decrypt(cached).decode() == newest

    # Everything the ledger keeps is re-encrypted; then the old key goes.
    result = CliRunner().invoke(app, ["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 stored ERP refresh token(s) with it" in result.output
    d.restart(LEDGERBRIDGE_SECRET_KEY=new)
    with pytest.raises(SecretKeyError):
        d.stored_token(old)
    if d.kind == "stored":
        ledger = d.ledger()
        assert ledger.get_connection(d.name, SecretBox([new])).acumatica.refresh_token == d.configured
        ledger.dispose()

    d.redis.flushdb()  # and Redis forgets: the next sign-in needs the ledger's token, new key only
    d.call()

    assert d.tokens_issued() == issued + 2
    assert d.live_tokens() == {d.stored_token(new)}
    assert d.backend.events["login_failures"] == 0
