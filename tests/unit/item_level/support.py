"""Test support for the item-level sync: a mapping file for the sandboxes, a fake ERP at the
system edge, and :class:`ItemHarness` - the Zuora sandbox in-process (Starlette TestClient
transport), a SQLite ledger, fakeredis and a manual clock shared by the sandbox and the flows.

The integration tests import :func:`write_mapping` and :class:`FakeErp` too.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes, ZuoraBackend, create_app
from shared.connections import ZuoraTarget
from shared.erp.base import (
    AppliedRef,
    ArDocument,
    Customer,
    Document,
    ErpRef,
    Journal,
    Payment,
    RefKind,
    RenderedRequest,
)
from shared.erp.errors import DuplicateDocuments, OutcomeUnknown
from shared.erp.file_export import FileExportErp
from shared.errors import NotFound, Transient
from shared.item_level.context import ItemContext, Options
from shared.ledger.db import dumps_json, loads_json
from shared.ledger.migrate import upgrade
from shared.ledger.models import SyncRecord
from shared.ledger.repo import Ledger
from shared.mapping import load_mapping
from shared.zuora import ZuoraClient
from tests.support.dispatch import InlineDispatcher, RecordingDispatcher

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: after every seeded date (December 2024)
SMALL = Sizes(
    accounts=8,
    invoices=40,
    payments=25,
    refunds=4,
    credit_memos=6,
    debit_memos=4,
    tie_count=10,
    large_invoices=0,
)

MAPPING = """\
[erp]
branch = "HQ"
ledger = "ACTUAL"
customer_class = "DEFAULT"
tax_accounting_code = "Sales Tax Payable"

[accounts]
"Accounts Receivable"           = { account = "11000", subaccount = "000000" }
"Cash"                          = { account = "10200", subaccount = "000000" }
"Undeposited Funds"             = { account = "10200", subaccount = "000000" }
"Customer Cash on Account"      = { account = "21000", subaccount = "000000" }
"Sales Tax Payable"             = { account = "24000", subaccount = "000000" }
"Deferred Revenue"              = { account = "23000", subaccount = "000000" }
"Sales Revenue"                 = { account = "40000", subaccount = "000000" }
"Subscription Revenue"          = { account = "40000", subaccount = "000000" }
"Professional Services Revenue" = { account = "41000", subaccount = "000000" }
"Late Fee Revenue"              = { account = "40000", subaccount = "000000" }

[payment_methods]
CreditCard   = { method = "CARD", cash_account = "10400" }
PayPal       = { method = "CARD", cash_account = "10400" }
ACH          = { method = "WIRE", cash_account = "10200" }
Check        = { method = "CHECK", cash_account = "10200" }
Cash         = { method = "CASH", cash_account = "10100" }
BankTransfer = { method = "WIRE", cash_account = "10200" }
WireTransfer = { method = "WIRE", cash_account = "10200" }

[currencies]
USD = "USD"
EUR = "EUR"
GBP = "GBP"
"""


def write_mapping(path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    """The Zuora sandbox's accounting codes and payment methods mapped to the Acumatica sandbox's
    chart, cash accounts and payment methods (lines starting with one of ``drop`` left out)."""
    lines = [line for line in MAPPING.splitlines() if not any(line.startswith(d) for d in drop)]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


class ManualClock:
    """Epoch seconds that move only when a test moves them (the sandbox's clock and the flows')."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@dataclass
class FakeErp:
    """The ERP port at the system edge: keeps every created document (duplicates included, as
    Acumatica would), counts calls, and plays a script for the next creates - an exception to
    raise, or ``"commit-then-unknown"`` (the ERP stores it, the answer is lost)."""

    released: bool = False
    documents: dict[tuple[str, str], list[ErpRef]] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    script: list[Any] = field(default_factory=list)
    applications: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    release_failures: int = 0  # the next releases that fail (the document stays unreleased)
    # Applications made after their document: ERP key -> {target number: Application}.
    later: dict[str, dict[str, Any]] = field(default_factory=dict)
    apply_script: list[Any] = field(default_factory=list)  # like ``script``, for apply_later
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _number: int = 0

    def upsert_customer(self, customer: Customer) -> ErpRef:
        with self._lock:
            self.calls.append(("upsert_customer", customer.customer_id))
            self.customers[customer.customer_id] = customer
        return ErpRef("customer", customer.customer_id, True)

    def create_document(self, doc: ArDocument) -> ErpRef:
        return self._create(doc.kind, doc.natural_key, doc.applies_to)

    def create_payment(self, payment: Payment) -> ErpRef:
        return self._create(payment.kind, payment.natural_key, payment.applications)

    def _create(self, kind: RefKind, key: str, applications: tuple[Any, ...]) -> ErpRef:
        with self._lock:
            self.calls.append((f"create_{kind}", key))
            action = self.script.pop(0) if self.script else None
            if isinstance(action, BaseException):
                raise action
            self._number += 1
            ref = ErpRef(kind, f"{kind}/{self._number:06d}", self.released)
            self.documents.setdefault((kind, key), []).append(ref)
            self.applications[key] = applications
        if action == "commit-then-unknown":
            raise OutcomeUnknown("the answer was lost after the ERP committed it", api="fake")
        return ref

    def post_journal(self, journal: Journal) -> ErpRef:  # pragma: no cover - not item-level
        raise NotImplementedError

    def render(self, document: Document, *, applied: AppliedRef | None = None) -> RenderedRequest:
        """What this fake is given for ``document``: the port method it would be called with and
        the neutral document as the ledger stores it (a fake has no wire format)."""
        method = {
            Customer: "upsert_customer",
            ArDocument: "create_document",
            Payment: "create_payment",
            Journal: "post_journal",
        }[type(document)]
        body = loads_json(dumps_json(dataclasses.asdict(document)))
        return RenderedRequest("erp", method, method, body, method)

    def release(self, ref: ErpRef) -> ErpRef:
        with self._lock:
            self.calls.append(("release", ref.key))
            if self.release_failures > 0:
                self.release_failures -= 1
                raise Transient("the release failed (HTTP 503)", api="fake", status=503)
        return ErpRef(ref.kind, ref.key, True)

    def apply_later(self, ref: ErpRef, application: Any, customer_id: str) -> tuple[ErpRef, bool]:
        """Applies like Acumatica: once per (document, target); a second call finds it applied."""
        with self._lock:
            self.calls.append(("apply_later", f"{ref.key}>{application.natural_key}"))
            action = self.apply_script.pop(0) if self.apply_script else None
            if isinstance(action, BaseException):
                raise action
            found = list(self.documents.get((application.kind, application.natural_key), []))
            if not found:
                raise NotFound(f"{application.natural_key} is not in the ERP", api="fake")
            made = self.later.setdefault(ref.key, {})
            if application.natural_key in made:
                return found[0], False
            made[application.natural_key] = application
        if action == "commit-then-unknown":
            raise OutcomeUnknown("the answer was lost after the ERP applied it", api="fake")
        return found[0], True

    def find_document(self, kind: RefKind, natural_key: str, customer_id: str | None = None) -> ErpRef | None:
        with self._lock:
            self.calls.append(("find_document", natural_key))
            found = list(self.documents.get((kind, natural_key), []))
        if len(found) > 1:
            raise DuplicateDocuments("more than one", natural_key=natural_key, refs=found, api="fake")
        return found[0] if found else None

    def journal_totals(self, **_: Any) -> Any:  # pragma: no cover - not item-level
        return {}

    def check_reference_data(self, *_: Any, **__: Any) -> list[str]:  # pragma: no cover
        return []

    def close(self) -> None:
        pass

    def count(self, kind: str, key: str) -> int:
        return len(self.documents.get((kind, key), []))

    def creates(self) -> int:
        return sum(1 for method, _ in self.calls if method.startswith("create_"))

    def erp_calls(self) -> int:
        return len(self.calls)


class ItemHarness:
    """The item-level flows of one connection, in-process (see the module docstring)."""

    def __init__(
        self,
        tmp_path: Path,
        redis: Any,
        *,
        sizes: Sizes = SMALL,
        seed: int = 7,
        erp: str = "fake",
        options: Options | None = None,
        inline: bool = False,
        mapping_drop: tuple[str, ...] = (),
        database_url: str | None = None,
    ) -> None:
        self.connection = f"t{uuid.uuid4().hex[:8]}"
        self.clock = ManualClock()
        self.backend = ZuoraBackend(clock=self.clock)
        self.backend.seed(seed, sizes, startup=True)
        self.http = TestClient(create_app(self.backend))
        self.zuora = ZuoraClient(
            ZuoraTarget(
                base_url="http://testserver", client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET
            ),
            connection=self.connection,
            redis=redis,
            transport=self.http._transport,
            clock=self.clock,
            sleep=lambda seconds: None,
        )
        if erp == "file":
            self.erp: Any = FileExportErp(tmp_path / "gl-export")
        else:
            self.erp = FakeErp()
        url = database_url or f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade(url)
        self.ledger = Ledger.from_url(url)
        self.mapping = load_mapping(write_mapping(tmp_path / "mapping.toml", drop=mapping_drop))
        self.inline = inline
        self.dispatch: Any = InlineDispatcher(lambda c: self.ctx) if inline else RecordingDispatcher()
        self.ctx = ItemContext(
            connection=self.connection,
            zuora=self.zuora,
            erp=self.erp,
            ledger=self.ledger,
            mapping=self.mapping,
            dispatch=self.dispatch,
            options=options or Options(erp_concurrency=1),
            clock=self.clock.dt,
        )

    # -- Zuora side ------------------------------------------------------------------------------

    def zuora_requests(self) -> dict[str, int]:
        counts: dict[str, int] = self.backend.gateway.requests()["counts"]
        return counts

    def zuora_calls(self) -> int:
        """Zuora API calls so far (the OAuth token request excluded)."""
        return sum(n for endpoint, n in self.zuora_requests().items() if "oauth" not in endpoint)

    def rows(self, table: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.backend.state(table)
        return rows

    def posted_ids(self, table: str, status: str) -> list[str]:
        return [r["Id"] for r in self.rows(table) if r.get("Status") == status]

    # -- ledger side -----------------------------------------------------------------------------

    def states(self) -> dict[tuple[str, str], int]:
        return self.ledger.counts_by_state(self.connection)

    def record(self, object_type: str, zuora_id: str) -> SyncRecord:
        row = self.ledger.get_record(self.connection, object_type, zuora_id)
        assert row is not None, f"{object_type} {zuora_id} is not in the ledger"
        return row

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def later(self, seconds: float) -> datetime:
        return self.clock.dt() + timedelta(seconds=seconds)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(self.ctx, *args, **kwargs)


def releasing_harness(tmp_path: Path, fake_redis: Any) -> ItemHarness:
    """A harness whose documents are released in the ERP (Acumatica applies only to released
    documents), posting one row at a time with a 60 s posting claim."""
    return ItemHarness(
        tmp_path,
        fake_redis,
        options=Options(release=True, erp_concurrency=1, posting_timeout=timedelta(seconds=60)),
    )
