"""Test support for the summary-GL close: a mapping file writer, an ASGI wrapper that tampers with
the Zuora sandbox's journal entries on the wire, and a :class:`Harness` that drives a close run
in-process over the real sandboxes (Starlette TestClient transports), a SQLite ledger and fakeredis.

The integration tests import :func:`write_mapping` and :class:`TamperEntries` too.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox import acumatica as acumatica_sandbox
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes, ZuoraBackend, create_app
from shared.close.context import STEP_BUDGET_SECONDS, CloseContext
from shared.close.driver import Resumed, drive_step, open_close, take_over
from shared.close.results import FINISHED, Done, Wait
from shared.connections import AcumaticaTarget, ZuoraTarget
from shared.coordination.close_lock import CloseLock
from shared.erp.acumatica import AcumaticaErp
from shared.erp.file_export import FileExportErp
from shared.exchange import Exchange
from shared.ledger.migrate import upgrade
from shared.ledger.models import CloseRun
from shared.ledger.repo import Ledger
from shared.settings import load_settings
from shared.zuora import ZuoraClient
from tests.support.notify import RecordingNotifier

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, after every seeded date
SMALL = Sizes(accounts=12, invoices=60, payments=40, refunds=6, credit_memos=8, debit_memos=5, tie_count=10)
MAPPING_EXAMPLE = Path(__file__).resolve().parents[3] / "mapping.example.toml"


def write_mapping(
    path: Path, *, drop_accounts: Iterable[str] = (), drop_currencies: Iterable[str] = ()
) -> Path:
    """The repository's example mapping (the sandbox's codes -> the Acumatica sandbox's chart),
    without the given accounting codes or currencies."""
    lines = []
    dropped = {f'"{name}"' for name in drop_accounts} | {f"{c} =" for c in drop_currencies}
    for line in MAPPING_EXAMPLE.read_text("utf-8").splitlines():
        if any(line.startswith(d) for d in dropped):
            continue
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


class ManualClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TamperEntries:
    """ASGI middleware in front of the Zuora sandbox: ``change(entry)`` edits every journal entry
    the API returns (list and detail), as if Zuora had sent that. Strips Accept-Encoding so the
    sandbox's gzip layer never compresses what is edited."""

    def __init__(self, app: Any, change: Callable[[dict[str, Any]], None]) -> None:
        self.app = app
        self.change = change

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/v1/journal-entries") or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(chunks)
                    if start.get("status") == 200:
                        data = json.loads(body, parse_float=Decimal)
                        for entry in data.get("journalEntries") or ([data] if "number" in data else []):
                            self.change(entry)
                        body = json.dumps(data, default=_number).encode()
                    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(body)).encode()))
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def _number(value: object) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    raise TypeError(type(value).__name__)


def unbalance(number: str, by: str = "0.01") -> Callable[[dict[str, Any]], None]:
    """A :class:`TamperEntries` change: add ``by`` to the first Debit item of entry ``number``."""

    def change(entry: dict[str, Any]) -> None:
        if entry.get("number") == number:
            item = next(i for i in entry["journalEntryItems"] if i["type"] == "Debit")
            item["amount"] = Decimal(str(item["amount"])) + Decimal(by)

    return change


class Crash(BaseException):
    """Stands for a worker dying at a crash point (BaseException: nothing may catch it)."""


class Harness:
    """One connection's close, driven in-process: the Zuora and Acumatica sandboxes behind
    TestClient transports, a SQLite ledger, a fakeredis lock, a manual clock for Zuora's jobs."""

    def __init__(
        self,
        tmp_path: Path,
        redis: Any,
        *,
        erp: str = "file",
        sizes: Sizes = SMALL,
        mapping: Path | None = None,
        tamper: Callable[[dict[str, Any]], None] | None = None,
        transaction_types: str | None = None,
    ) -> None:
        self.connection = f"t{uuid.uuid4().hex[:8]}"
        self.clock = ManualClock()
        self.zuora_backend = ZuoraBackend(clock=self.clock)
        self.zuora_backend.seed(7, sizes, startup=True)
        app: Any = create_app(self.zuora_backend)
        if tamper is not None:
            app = TamperEntries(app, tamper)
        self._zuora_http = TestClient(app)
        self.exchanges: list[Exchange] = []
        self.redis = redis
        self.zuora = ZuoraClient(
            ZuoraTarget(
                base_url="http://testserver", client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET
            ),
            connection=self.connection,
            redis=redis,
            audit=self.exchanges.append,
            transport=self._zuora_http._transport,
            clock=self.clock,
            sleep=lambda seconds: None,
        )
        self.erp_kind = erp
        if erp == "acumatica":
            self.acumatica_app = acumatica_sandbox.create_app()
            self._acumatica_http = TestClient(self.acumatica_app)
            self.erp: Any = AcumaticaErp.from_target(
                AcumaticaTarget(
                    url="http://testserver",
                    endpoint="Default/24.200.001",
                    username=acumatica_sandbox.DEFAULT_USERNAME,
                    password=acumatica_sandbox.DEFAULT_PASSWORD,
                    tenant=acumatica_sandbox.DEFAULT_TENANT,
                    branch="HQ",
                    requests_per_minute=60_000,  # the licence limit is not under test here
                    max_concurrent=4,
                ),
                connection=self.connection,
                redis=redis,
                transport=self._acumatica_http._transport,
            )
        else:
            self.export_dir = tmp_path / "gl-export"
            self.erp = FileExportErp(self.export_dir)
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade(url)
        self.ledger = Ledger.from_url(url)
        self.mapping_path = mapping or write_mapping(tmp_path / "mapping.toml")
        self.settings = load_settings(
            mapping_file=self.mapping_path, journal_transaction_types=transaction_types
        )
        self.notifier = RecordingNotifier()
        self.results: list[tuple[str, Any]] = []
        self.dead: set[tuple[str, int, float]] = set()
        self._process = 0
        self.step_budget = STEP_BUDGET_SECONDS
        self.concurrency = 1
        self.mark_concurrency: int | None = None
        self.mark_while_posting = True
        self.approval = "none"

    # -- building blocks -------------------------------------------------------------------------

    def context(self, reached: Callable[[str], None] | None = None) -> CloseContext:
        return CloseContext(
            connection=self.connection,
            zuora=self.zuora,
            erp=self.erp,
            ledger=self.ledger,
            settings=self.settings,
            notifier=self.notifier,
            erp_name="Acumatica" if self.erp_kind == "acumatica" else "the GL file export",
            clock=self.clock,
            reached=reached or (lambda point: None),
            step_budget=self.step_budget,
            concurrency=self.concurrency,
            mark_concurrency=self.mark_concurrency,
            mark_while_posting=self.mark_while_posting,
            approval=self.approval,
        )

    def new_process(self) -> tuple[str, int, float]:
        """A fresh identity: a 'worker process' of this harness."""
        self._process += 1
        return ("test-host", self._process, float(self._process))

    def lock(self, period: str, identity: tuple[str, int, float]) -> CloseLock:
        return CloseLock(
            self.redis, self.connection, period, identity=identity, alive=lambda *who: who not in self.dead
        )

    def open(
        self, period: str = "December 2024", *, dry_run: bool = False, allow_closed: bool = False
    ) -> int:
        run, _ = open_close(self.ledger, self.connection, period, allow_closed=allow_closed, dry_run=dry_run)
        return run.id or 0

    # -- driving -----------------------------------------------------------------------------------

    def drive(
        self,
        run_id: int,
        *,
        crash_at: str | None = None,
        on_point: Mapping[str, Callable[[], None]] | None = None,
        max_tasks: int = 400,
    ) -> CloseRun:
        """Resume the run as a new driver and run its chain to the end, moving the clock over
        every Wait. With ``crash_at`` the 'process' dies at that point: its identity is marked dead
        and :class:`Crash` propagates (the run is left as a real crash would leave it).
        ``on_point[point]()`` runs when the close passes that point (to change the world); the
        points are those of :mod:`shared.close.hooks`."""
        hooks = dict(on_point or {})
        identity = self.new_process()
        run = self.ledger.get_close_run(run_id)
        lock = self.lock(run.period_name, identity)

        def reached(point: str) -> None:
            if point in hooks:
                hooks.pop(point)()
            if point == crash_at:
                self.dead.add(identity)
                raise Crash(point)

        ctx = self.context(reached)
        token = uuid.uuid4().hex
        outcome = take_over(ctx, lock, run_id, token)
        if not isinstance(outcome, Resumed):
            self.results.append(("resume", outcome))
            return self.ledger.get_close_run(run_id)
        step = outcome.step
        for _ in range(max_tasks):
            result = drive_step(ctx, lock, run_id, step, token)
            self.results.append((step, result))
            if isinstance(result, Wait):
                self.clock.now += result.seconds
                continue
            if isinstance(result, Done) and result.next_step != FINISHED:
                step = result.next_step
                continue
            break
        else:
            raise AssertionError(f"close run {run_id} did not finish in {max_tasks} tasks")
        return self.ledger.get_close_run(run_id)

    def close(self, period: str = "December 2024", **flags: Any) -> CloseRun:
        return self.drive(self.open(period, **flags))

    # -- what happened -----------------------------------------------------------------------------

    def requests(self, method: str, path_part: str) -> list[Exchange]:
        """Zuora exchanges whose method and URL match (each attempt counts)."""
        return [e for e in self.exchanges if e.method == method and path_part in e.url]

    def zuora_entries(self) -> list[dict[str, Any]]:
        return self.zuora_backend.state("journal-entries")

    def zuora_runs(self) -> list[dict[str, Any]]:
        return self.zuora_backend.state("journal-runs")

    def erp_batches(self) -> list[Mapping[str, Any]]:
        """Every GL batch in the ERP (Acumatica sandbox rows, or the export's journal rows by key)."""
        if self.erp_kind == "acumatica":
            rows = self.acumatica_app.state.backend.state("JournalTransaction")
            return list(rows)
        path = self.export_dir
        batches: dict[str, dict[str, Any]] = {}
        for file in sorted(path.glob("*/journal.jsonl")):
            for line in file.read_text("utf-8").splitlines():
                row = json.loads(line)
                batches.setdefault(row["natural_key"], {"Description": row["natural_key"], "lines": []})
                batches[row["natural_key"]]["lines"].append(row)
        return list(batches.values())

    def batches_for(self, number: str) -> list[Mapping[str, Any]]:
        return [
            b
            for b in self.erp_batches()
            if str(b.get("Description", "")) == number
            or str(b.get("Description", "")).startswith(number + " ")
        ]

    def close_all(self) -> None:
        self.zuora.close()
        self.erp.close()
        self.ledger.dispose()
