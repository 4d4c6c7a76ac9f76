"""The Finance console over HTTP: the web app (``worker.web.create_app``) on a migrated SQLite
ledger file, driven by Starlette's TestClient as a browser would (cookies, forms, redirects).
What talks to Zuora and the ERP (the replay's dry run and re-drive, the evidence pack) is
replaced by recorders; everything else is the real code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.ledger.migrate import upgrade
from shared.ledger.models import SyncRecord, UserRole
from shared.ledger.repo import Ledger
from shared.passwords import hash_password
from shared.replay import ErpRequest, Preview, ReplayResult
from shared.settings import Settings, load_settings
from worker.console import ConsoleDeps
from worker.web import create_app

CONSOLE_SECRET = "console-signing-secret-0123456789-abcdefghijklmnop"
PASSWORD = "a long enough passphrase"
USERS = {"vera": UserRole.VIEWER, "pat": UserRole.PREPARER, "abe": UserRole.APPROVER, "ada": UserRole.ADMIN}


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Recorder:
    """Stands in for the replay and the evidence pack, and remembers each call."""

    previews: list[str] = field(default_factory=list)
    retries: list[tuple[str, str, str]] = field(default_factory=list)
    packs: list[dict[str, Any]] = field(default_factory=list)
    created: list[tuple[dict[str, Any], tuple[str, str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check_entry(self, entry: Any) -> list[str]:
        return list(self.problems)

    def create_entry(self, entry: Any, key: tuple[str, str]) -> str:
        self.created.append((dict(entry), key))
        return f"JE-{len(self.created):08d}"

    def preview(self, connection: str, record: SyncRecord) -> Preview:
        self.previews.append(record.subject)
        return Preview(
            record=record,
            fetched=True,
            notes=["the customer C-0001 it applies to has no ERP reference in the ledger"],
            payload={"type": "Invoice", "amount": "120.00"},
            request=ErpRequest(
                "acumatica", "PUT Invoice", {"Type": {"value": "Invoice"}, "Amount": {"value": "120.00"}}
            ),
            diff='--- sent before\n+++ replay\n@@ -1 +1 @@\n-  "Amount": {"value": "100.00"}\n+  "Amount": {"value": "120.00"}',
            would="return it to pending and post the payload above (one ERP call)",
        )

    def retry(self, connection: str, record: SyncRecord, reason: str) -> ReplayResult:
        self.retries.append((connection, record.subject, reason))
        return ReplayResult(
            record_id=record.id or 0,
            subject=record.subject,
            label=f"{record.object_type} {record.zuora_number}",
            before=record.state,
            after="posted",
            action="posted",
            detail="posted as AR-000123",
            erp_ref="AR-000123",
        )

    def evidence(
        self, ledger: Ledger, settings: Settings, connection: str, period_name: str, *, generated_by: str
    ) -> bytes:
        if period_name == "Never Closed":
            raise ValueError(f"{period_name!r} has no close run on connection {connection!r}")
        self.packs.append({"connection": connection, "period": period_name, "generated_by": generated_by})
        return b"PK\x05\x06" + b"\x00" * 18


@dataclass
class Console:
    ledger: Ledger
    settings: Settings
    clock: Clock
    recorder: Recorder
    url: str

    def client(self, **settings: Any) -> TestClient:
        """A browser on the web app (https, so Secure cookies are sent back)."""
        chosen = self.settings.model_copy(update=settings) if settings else self.settings

        def decide(ledger: Ledger, run_id: int, *, user: str, approve: bool, comment: str) -> Any:
            from shared.close.approval import decide as record_decision

            return record_decision(ledger, run_id, user=user, approve=approve, comment=comment)

        def decide_request(ledger: Ledger, request_id: int, *, user: str, approve: bool, comment: str) -> Any:
            from shared.journal_requests import decide_entry

            return decide_entry(
                ledger,
                request_id,
                user=user,
                approve=approve,
                comment=comment,
                check=self.recorder.check_entry,
                create=self.recorder.create_entry,
            )

        deps = ConsoleDeps(
            settings=lambda: chosen,
            ledger=lambda: self.ledger,
            clock=self.clock,
            preview=self.recorder.preview,
            retry=self.recorder.retry,
            decide=decide,
            decide_request=decide_request,
            evidence=self.recorder.evidence,
        )
        app = create_app(settings=chosen, ledger=self.ledger, enqueue=lambda *_: None, console=deps)
        return TestClient(app, base_url="https://testserver", follow_redirects=False)

    def sign_in(self, name: str, client: TestClient | None = None, password: str = PASSWORD) -> TestClient:
        client = client or self.client()
        token = csrf_of(client.get("/console/login").text)
        answer = client.post(
            "/console/login",
            data={"username": name, "password": password, "csrf_token": token, "next": "/console/"},
        )
        assert answer.status_code == 303, answer.text
        return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


@pytest.fixture
def console(tmp_path) -> Iterator[Console]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    ledger = Ledger.from_url(url)
    for name, role in USERS.items():
        ledger.add_user(name, role, hash_password(PASSWORD))
    settings = load_settings(database_url=url, console_secret=CONSOLE_SECRET, connection="acme")
    yield Console(ledger, settings, Clock(), Recorder(), url)
    ledger.dispose()
