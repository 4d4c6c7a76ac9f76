"""Two connections synced side by side do not see each other's records, tokens or marks.

Two Zuora tenants (sandboxes with different seeds, sizes and OAuth credentials) and two Acumatica
instances (different passwords); connection A is the environment's default, connection B is
stored in the ledger (secrets encrypted with LEDGERBRIDGE_SECRET_KEY). One worker fleet serves
both; ``ledgerbridge sync --wait`` runs for each at the same time. Afterwards each ERP holds
exactly its own tenant's documents and customers, the ledger's rows and marks are keyed per
connection, each connection has its own cached token in Redis, and each sandbox saw exactly the
token requests ledgerbridge counted for its connection."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import warnings

import pytest
import redis
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from sandbox import acumatica as acumatica_sandbox
from sandbox.server import ThreadedServer
from sandbox.zuora import Sizes
from sandbox.zuora import create_app as zuora_app
from shared.connections import AcumaticaTarget, Connection, ZuoraTarget
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox
from shared.metrics import read_api_counts
from shared.settings import load_settings
from tests.integration.item_level.support import (
    REPO,
    Zuora,
    acumatica_env,
    erp_documents,
    expected_documents,
    forget_queue,
    item_env,
)
from worker.web import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SIZES = {
    "a": Sizes(
        accounts=4,
        invoices=9,
        payments=4,
        refunds=1,
        credit_memos=1,
        debit_memos=1,
        tie_count=0,
        large_invoices=0,
    ),
    "b": Sizes(
        accounts=6,
        invoices=15,
        payments=7,
        refunds=1,
        credit_memos=2,
        debit_memos=2,
        tie_count=0,
        large_invoices=0,
    ),
}
SEEDS = {"a": 31, "b": 32}


class Tenant:
    """One side: a Zuora sandbox and an Acumatica sandbox with credentials of their own."""

    def __init__(self, side: str) -> None:
        self.client_id = str(uuid.uuid4())  # Zuora client ids are 36 characters
        self.client_secret = f"secret-{side}-{uuid.uuid4().hex}"  # at most 42
        self.password = f"pw-{side}-{uuid.uuid4().hex}"
        self.zuora_server = ThreadedServer(
            zuora_app(
                seed=SEEDS[side],
                sizes=SIZES[side],
                client_id=self.client_id,
                client_secret=self.client_secret,
            )
        ).start()
        self.zuora = Zuora(self.zuora_server.url)
        app = acumatica_sandbox.create_app(password=self.password)
        self.erp: acumatica_sandbox.AcumaticaBackend = app.state.backend
        self.acumatica = ThreadedServer(app).start()

    def token_requests(self) -> int:
        return sum(n for endpoint, n in self.zuora.requests().items() if endpoint.endswith("/oauth/token"))

    def acumatica_logins(self) -> int:
        counts = self.erp.counts()
        return int(counts["logins"]) + int(counts["login_failures"])

    def stop(self) -> None:
        self.zuora_server.stop()
        self.acumatica.stop()


def ledgerbridge(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def tenants():
    made = {side: Tenant(side) for side in ("a", "b")}
    yield made
    for tenant in made.values():
        tenant.stop()


def test_two_connections_synced_side_by_side_keep_records_tokens_and_marks_apart(
    tmp_path, worker_fleet, tenants, connection_name, redis_url
):
    a, b = tenants["a"], tenants["b"]
    name_a, name_b = connection_name, f"{connection_name}-b"
    key = Fernet.generate_key().decode()
    env = {
        **acumatica_env(a.acumatica.url),
        **item_env(tmp_path),
        "LEDGERBRIDGE_ACUMATICA_PASSWORD": a.password,
        "LEDGERBRIDGE_ZUORA_CLIENT_ID": a.client_id,
        "LEDGERBRIDGE_ZUORA_CLIENT_SECRET": a.client_secret,
        "LEDGERBRIDGE_SECRET_KEY": key,
    }
    fleet = worker_fleet(zuora_url=a.zuora.url, **env)
    ledger = Ledger.from_url(fleet.env["LEDGERBRIDGE_DATABASE_URL"])
    ledger.add_connection(
        Connection(
            name=name_b,
            zuora=ZuoraTarget(base_url=b.zuora.url, client_id=b.client_id, client_secret=b.client_secret),
            erp_kind="acumatica",
            acumatica=AcumaticaTarget(
                url=b.acumatica.url,
                endpoint=acumatica_sandbox.DEFAULT_ENDPOINT,
                username=acumatica_sandbox.DEFAULT_USERNAME,
                password=b.password,
                tenant=acumatica_sandbox.DEFAULT_TENANT,
                requests_per_minute=600_000,
                max_concurrent=4,
            ),
        ),
        SecretBox.from_setting(key),
    )
    client = redis.Redis.from_url(redis_url)
    try:
        fleet.start(1, concurrency=2)
        syncs = {
            name_a: ledgerbridge(fleet.env, "sync", "--wait", "--timeout", "150"),
            name_b: ledgerbridge(fleet.env, "sync", "--wait", "--timeout", "150", "--connection", name_b),
        }
        for name, proc in syncs.items():
            out, errors = proc.communicate(timeout=200)
            assert proc.returncode == 0, f"{name}: {out}\n{errors}"
            assert "everything pulled is posted and marked" in out

        # Each ERP holds exactly its own tenant's documents and customers.
        for tenant in (a, b):
            expected = expected_documents(tenant.zuora)
            documents = erp_documents(tenant.erp)
            assert documents == dict.fromkeys(expected, 1)
            accounts = {r["Id"] for r in tenant.zuora.rows("accounts")}
            assert {c["AccountRef"] for c in tenant.erp.state("Customer")} == accounts
        assert not {c["AccountRef"] for c in a.erp.state("Customer")} & {
            c["AccountRef"] for c in b.erp.state("Customer")
        }

        # The ledger: each connection's rows are its own tenant's records, all marked; marks per connection.
        for name, tenant in ((name_a, a), (name_b, b)):
            ids = {
                row["Id"]
                for table in ("accounts", "invoices", "payments", "refunds", "credit-memos", "debit-memos")
                for row in tenant.zuora.rows(table)
            }
            with ledger.session() as session:
                from sqlmodel import select

                from shared.ledger.models import SyncRecord

                rows = session.exec(select(SyncRecord).where(SyncRecord.connection == name)).all()
            assert rows and {r.zuora_id for r in rows} <= ids
            assert {r.state for r in rows} == {"marked"}
            streams = ledger.list_streams(name)
            assert len(streams) == 6 and all(s.mark is not None for s in streams)
        assert len(expected_documents(a.zuora)) != len(expected_documents(b.zuora))

        # Tokens: one cache entry per connection, different tokens, each from its own tenant.
        token_a = client.get(f"ledgerbridge:{name_a}:zuora:token")
        token_b = client.get(f"ledgerbridge:{name_b}:zuora:token")
        assert token_a and token_b and token_a != token_b
        counted_a, counted_b = read_api_counts(client, name_a), read_api_counts(client, name_b)
        assert counted_a.tokens["zuora"] == a.token_requests() >= 1
        assert counted_b.tokens["zuora"] == b.token_requests() >= 1
        assert counted_a.tokens["acumatica"] == a.acumatica_logins() >= 1
        assert counted_b.tokens["acumatica"] == b.acumatica_logins() >= 1
        assert sum(n for (api, _), n in counted_a.calls.items() if api == "zuora") == sum(
            a.zuora.requests().values()
        )
        assert sum(n for (api, _), n in counted_b.calls.items() if api == "zuora") == sum(
            b.zuora.requests().values()
        )

        # GET /metrics reports both, apart.
        settings = load_settings(
            connection=name_a, database_url=fleet.env["LEDGERBRIDGE_DATABASE_URL"], metrics_token="scraper"
        )
        web = TestClient(create_app(settings=settings, ledger=ledger, redis=client))
        scraped = web.get("/metrics", headers={"Authorization": "Bearer scraper"}).text
        families = {f.name: f for f in text_string_to_metric_families(scraped)}
        marked = {
            (s.labels["connection"], s.labels["object_type"]): s.value
            for s in families["ledgerbridge_records"].samples
            if s.labels["state"] == "marked" and s.value
        }
        assert sum(v for (c, _), v in marked.items() if c == name_a) == len(
            expected_documents(a.zuora)
        ) + len(a.zuora.rows("accounts"))
        assert sum(v for (c, _), v in marked.items() if c == name_b) == len(
            expected_documents(b.zuora)
        ) + len(b.zuora.rows("accounts"))
        tokens = {
            s.labels["connection"]: s.value
            for s in families["ledgerbridge_token_requests"].samples
            if s.labels["api"] == "zuora" and s.name.endswith("_total")
        }
        assert tokens == {name_a: a.token_requests(), name_b: b.token_requests()}

        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "cli.main", "status", "--json", "--connection", name_b],
                cwd=REPO,
                env=fleet.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )
        assert status["connection"] == name_b
        assert {s["stream"]: s["counts"]["marked"] for s in status["streams"]}["invoices"] == sum(
            1 for r in b.zuora.rows("invoices") if r["Status"] == "Posted"
        )
    finally:
        fleet.stop()
        for name in (name_a, name_b):
            keys = list(client.scan_iter(f"ledgerbridge:{name}:*", count=500))
            if keys:
                client.delete(*keys)
        forget_queue(redis_url, fleet.queue)
        client.close()
        ledger.dispose()
