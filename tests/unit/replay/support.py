"""Test support for ``replay``: the item-level harness (Zuora sandbox in-process, SQLite ledger,
fakeredis, manual clock) with records brought into each state, and an Acumatica sandbox served
in-process behind the real Acumatica adapter when a test needs the exact wire body."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from sandbox import acumatica as acumatica_sandbox
from shared.connections import AcumaticaTarget
from shared.erp.acumatica import AcumaticaErp
from shared.exchange import Exchange
from shared.item_level import mark_stream, post_records, pull_stream
from shared.item_level.streams import INVOICES, PAYMENTS
from shared.ledger import states
from shared.ledger.models import SyncRecord
from shared.mapping import load_mapping
from tests.unit.item_level.support import ItemHarness, write_mapping

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

STATES = ("pending", "posting", "posted", "marked", "failed", "parked")


class AcumaticaInProcess:
    """The Acumatica sandbox behind a TestClient transport, with the real adapter in front."""

    def __init__(self, connection: str, redis: Any) -> None:
        self.app = acumatica_sandbox.create_app()
        self.backend: acumatica_sandbox.AcumaticaBackend = self.app.state.backend
        self.http = TestClient(self.app)
        self.exchanges: list[Exchange] = []
        self.erp = AcumaticaErp.from_target(
            AcumaticaTarget(
                url="http://testserver",
                endpoint=acumatica_sandbox.DEFAULT_ENDPOINT,
                username=acumatica_sandbox.DEFAULT_USERNAME,
                password=acumatica_sandbox.DEFAULT_PASSWORD,
                tenant=acumatica_sandbox.DEFAULT_TENANT,
                requests_per_minute=600_000,
                max_concurrent=4,
            ),
            connection=connection,
            redis=redis,
            audit=self.exchanges.append,
            transport=self.http._transport,
            sleep=lambda seconds: None,
        )

    def puts(self) -> int:
        return sum(n for call, n in self.backend.counts()["calls"].items() if call.startswith("PUT "))

    def sent(self, entity: str) -> list[Exchange]:
        """The PUTs of ``entity`` the adapter made (the audit hook's view of the wire)."""
        return [e for e in self.exchanges if e.method == "PUT" and e.url.rstrip("/").endswith("/" + entity)]


def with_acumatica(h: ItemHarness, redis: Any) -> AcumaticaInProcess:
    """Swap the harness's ERP for the Acumatica sandbox (released documents, so applications apply)."""
    acumatica = AcumaticaInProcess(h.connection, redis)
    h.erp = acumatica.erp
    h.ctx.erp = acumatica.erp
    return acumatica


def pulled_invoices(h: ItemHarness) -> list[SyncRecord]:
    pull_stream(h.ctx, INVOICES)
    return [h.record("invoice", zid) for zid in h.posted_ids("invoices", "Posted")]


def post_all(h: ItemHarness) -> None:
    post_records(h.ctx, h.dispatch.post_ids)


def invoice_in_state(h: ItemHarness, state: str) -> SyncRecord:
    """An invoice brought into ``state`` the way the flows bring it there."""
    rows = pulled_invoices(h)
    row = rows[0]
    if state == "pending":
        return h.record("invoice", row.zuora_id)
    if state == "parked":
        with h.ledger.session() as session:
            states.park(session, row.id or 0, "unmapped account 'X': add it to [accounts]")
        return h.record("invoice", row.zuora_id)
    if state == "failed":
        with h.ledger.session() as session:
            states.fail(session, row.id or 0, "the ERP refused it: period closed")
        return h.record("invoice", row.zuora_id)
    post_all(h)
    if state == "posting":
        # A forced re-post that died after committing `posting`: the payload sent is on the row.
        with h.ledger.session() as session:
            states.begin_posting(session, row.id or 0, force=True, now=h.clock.dt())
        return h.record("invoice", row.zuora_id)
    if state == "marked":
        mark_stream(h.ctx, INVOICES)
    return h.record("invoice", row.zuora_id)


def paid_invoice_payment(h: ItemHarness) -> SyncRecord:
    """A payment applied to an invoice, with both pulled (nothing posted)."""
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    applied = {a["PaymentId"] for a in h.rows("payment-applications")}
    payment = next(p for p in h.rows("payments") if p["Id"] in applied and p["Status"] == "Processed")
    return h.record("payment", payment["Id"])


def remap(
    h: ItemHarness, tmp_path: Path, *, name: str = "fixed.toml", replace: dict[str, str] | None = None
) -> None:
    """Load a new mapping file into the harness (a person fixed or changed it)."""
    path = write_mapping(tmp_path / name)
    if replace:
        text = path.read_text("utf-8")
        for old, new in replace.items():
            text = text.replace(old, new)
        path.write_text(text, "utf-8")
    h.mapping = load_mapping(path)
    h.ctx.mapping = h.mapping
