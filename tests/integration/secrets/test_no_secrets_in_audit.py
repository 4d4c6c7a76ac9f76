"""Secrets never reach the audit trail or the logs.

A real deployment in miniature, with distinctive secrets: the Zuora OAuth client secret, the
Acumatica password, the callout HMAC secret and the Fernet key that encrypts stored connections
and the Acumatica session. A stored connection is added (secrets typed at the hidden prompts) and
probed; ``ledgerbridge sync --wait`` runs with a Celery worker; the Zuora sandbox sends signed
callouts to the callout receiver (``uvicorn worker.web:app``); ``ledgerbridge close --wait``
closes the period. Then every audit_event row, every process's log output, every command's
output and the connection's Redis values are searched for each secret - as is, URL-encoded,
JSON-escaped and base64-encoded: none may appear."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
import redis
import sqlalchemy as sa
from cryptography.fernet import Fernet

from sandbox import acumatica as acumatica_sandbox
from sandbox.server import ThreadedServer
from sandbox.zuora import Sizes
from sandbox.zuora import create_app as zuora_app
from shared.ledger.repo import Ledger
from tests.integration.item_level.support import (
    REPO,
    Zuora,
    acumatica_env,
    erp_documents,
    forget_queue,
    item_env,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SIZES = Sizes(
    accounts=4,
    invoices=10,
    payments=5,
    refunds=1,
    credit_memos=1,
    debit_memos=1,
    tie_count=0,
    large_invoices=0,
)


def encodings(secret: str) -> set[str]:
    """The forms a leaked secret could take in a body, header, URL or log line."""
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    return {form for form in forms if len(form) >= 12}


def ledgerbridge(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env={**env, "COLUMNS": "200"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def redis_values(client: redis.Redis[bytes], connections: tuple[str, ...]) -> dict[str, str]:
    """Every string and hash value under the connections' keys (tokens, sessions, counters)."""
    values = {}
    for name in connections:
        for key in client.scan_iter(f"ledgerbridge:{name}:*", count=500):
            kind = client.type(key)
            if kind == b"string":
                values[key.decode()] = repr(client.get(key))
            elif kind == b"hash":
                values[key.decode()] = repr(client.hgetall(key))
    return values


class Receiver:
    """``uvicorn worker.web:app`` on a free loopback port, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        handle = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "worker.web:app", "--host", "127.0.0.1", "--port", "0"],
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(rb"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_bytes())
            if found:
                self.url = found.group(1).decode()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the callout receiver did not start:\n{log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


def test_no_secret_appears_in_the_audit_trail_the_logs_or_redis(
    tmp_path, worker_fleet, connection_name, redis_url
):
    token = uuid.uuid4().hex
    secrets = {
        "zuora client secret": f"Zs+/{token[:26]}=",  # at most 42 characters (the sandbox's rule)
        "acumatica password": f"Acu+P@ss/w0rd&{token}=",
        "callout hmac secret": f"hmac-{token}-{uuid.uuid4().hex}",
        "fernet key": Fernet.generate_key().decode(),
    }
    client_id = str(uuid.uuid4())
    zuora_server = ThreadedServer(
        zuora_app(seed=41, sizes=SIZES, client_id=client_id, client_secret=secrets["zuora client secret"])
    ).start()
    zuora = Zuora(zuora_server.url)
    acumatica_app = acumatica_sandbox.create_app(password=secrets["acumatica password"])
    acumatica = ThreadedServer(acumatica_app).start()
    env = {
        **acumatica_env(acumatica.url),
        **item_env(tmp_path),
        "LEDGERBRIDGE_ZUORA_CLIENT_ID": client_id,
        "LEDGERBRIDGE_ZUORA_CLIENT_SECRET": secrets["zuora client secret"],
        "LEDGERBRIDGE_ACUMATICA_PASSWORD": secrets["acumatica password"],
        "LEDGERBRIDGE_ACUMATICA_BRANCH": "HQ",
        "LEDGERBRIDGE_CALLOUT_HMAC_SECRET": secrets["callout hmac secret"],
        "LEDGERBRIDGE_SECRET_KEY": secrets["fernet key"],
        "LEDGERBRIDGE_LOG_LEVEL": "DEBUG",
    }
    fleet = worker_fleet(zuora_url=zuora.url, **env)
    receiver = None
    outputs: list[str] = []
    cached: dict[str, str] = {}
    client = redis.Redis.from_url(redis_url)
    stored = f"{connection_name}-stored"
    try:
        fleet.start(1, concurrency=2)
        receiver = Receiver(fleet.env, tmp_path / "web.log")

        # A stored connection: the secrets typed at hidden prompts, encrypted with the Fernet key.
        added = ledgerbridge(
            fleet.env,
            "connection", "add", stored,
            "--zuora-url", zuora.url, "--zuora-client-id", client_id, "--erp", "acumatica",
            "--acumatica-url", acumatica.url, "--acumatica-username", acumatica_sandbox.DEFAULT_USERNAME,
            "--acumatica-tenant", acumatica_sandbox.DEFAULT_TENANT,
            stdin=f"{secrets['zuora client secret']}\n{secrets['acumatica password']}\n",
        )  # fmt: skip
        outputs += [added.stdout, added.stderr]
        assert added.returncode == 0, added.stdout + added.stderr
        probed = ledgerbridge(fleet.env, "connection", "test", stored)
        outputs += [probed.stdout, probed.stderr]
        assert probed.returncode == 0, probed.stdout + probed.stderr

        synced = ledgerbridge(fleet.env, "sync", "--wait", "--timeout", "180")
        outputs += [synced.stdout, synced.stderr]
        assert synced.returncode == 0, synced.stdout + synced.stderr

        # Signed callouts for new invoices, through the receiver to the worker.
        zuora.configure_callouts(
            url=receiver.url + "/zuora/callouts",
            secret=secrets["callout hmac secret"],
            retry_interval_seconds=0.2,
        )
        account = str(zuora.rows("accounts")[0]["Id"])
        pushed = [zuora.add("invoices", {"AccountId": account}) for _ in range(2)]
        wait_until(
            lambda: all(
                erp_documents(acumatica_app.state.backend).get(("invoice", i["InvoiceNumber"]))
                for i in pushed
            ),
            timeout=90,
            what="the pushed invoices in Acumatica",
        )

        closed = ledgerbridge(fleet.env, "close", "December 2024", "--wait", "--timeout", "180")
        outputs += [closed.stdout, closed.stderr]
        assert closed.returncode == 0, closed.stdout + closed.stderr

        explained = ledgerbridge(fleet.env, "explain", pushed[0]["InvoiceNumber"], "--json", "--full")
        outputs += [explained.stdout, explained.stderr]
        assert explained.returncode == 0, explained.stderr
        dry = ledgerbridge(fleet.env, "replay", pushed[0]["InvoiceNumber"], "--dry-run", "--json")
        outputs += [dry.stdout, dry.stderr]
        assert dry.returncode == 0, dry.stderr
        cached = redis_values(client, (connection_name, stored))  # before the processes sign out
    finally:
        if receiver is not None:
            receiver.stop()
        fleet.stop()

    try:
        ledger = Ledger.from_url(fleet.env["LEDGERBRIDGE_DATABASE_URL"])
        with ledger.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM audit_event"))]
            callouts = conn.execute(sa.text("SELECT count(*) FROM callout_notification")).scalar_one()
            stored_rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM connection"))]
        ledger.dispose()
        audit = "\n".join(json.dumps(row, default=str) for row in rows)
        logs = {p.name: p.read_text(errors="replace") for p in sorted(tmp_path.glob("*.log"))}

        # The run used every secret: tokens fetched, Acumatica signed in, callouts verified, a
        # connection stored encrypted and probed, a close posted.
        token_requests = [r for r in rows if r["kind"] == "http" and str(r["url"]).endswith("/oauth/token")]
        logins = [r for r in rows if r["kind"] == "http" and str(r["url"]).endswith("/entity/auth/login")]
        # The secrets were in those requests, and the audit kept them only as the redaction mark.
        assert token_requests and all("client_secret=%2A%2A%2A" in r["request_body"] for r in token_requests)
        assert logins and all('"password":"***"' in r["request_body"] for r in logins)
        assert any(r["subject"] == f"connection:{stored}" for r in rows)
        assert any(str(r["subject"] or "").startswith("journal_entry:") for r in rows)
        assert callouts >= 2
        assert len(stored_rows) == 1 and stored_rows[0]["secrets"].startswith("gAAAA")  # a Fernet token
        assert len(rows) > 100 and any("Uvicorn running" in text for text in logs.values())
        assert f"ledgerbridge:{connection_name}:zuora:token" in cached

        haystacks = {
            "audit_event": audit,
            "connection table": json.dumps(stored_rows, default=str),
            "command output": "\n".join(outputs),
            **{f"log {name}": text for name, text in logs.items()},
            **{f"redis {key}": value for key, value in cached.items()},
        }
        leaks = [
            f"{what} ({form!r}) in {where}"
            for what, secret in secrets.items()
            for form in encodings(secret)
            for where, text in haystacks.items()
            if form in text
        ]
        assert leaks == []
    finally:
        for name in (connection_name, stored):
            keys = list(client.scan_iter(f"ledgerbridge:{name}:*", count=500))
            if keys:
                client.delete(*keys)
        forget_queue(redis_url, fleet.queue)
        client.close()
        zuora_server.stop()
        acumatica.stop()
        httpx.Client().close()
