"""Integration support for the item-level sync: sandboxes over loopback, flows run in the test
process against real Redis and a migrated SQLite ledger, and helpers for worker/beat processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import redis

from sandbox import acumatica as acumatica_sandbox
from sandbox.server import ThreadedServer
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from shared.connections import AcumaticaTarget, ZuoraTarget
from shared.erp.acumatica import AcumaticaErp
from shared.item_level.context import ItemContext, Options
from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger
from shared.mapping import load_mapping
from shared.zuora import ZuoraClient
from tests.support.dispatch import RecordingDispatcher
from tests.unit.item_level.support import FakeErp, write_mapping

REPO = Path(__file__).resolve().parents[3]
CELERY = str(Path(sys.executable).with_name("celery"))


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def zuora_client(url: str, connection: str, redis_client: redis.Redis) -> ZuoraClient:
    return ZuoraClient(
        ZuoraTarget(base_url=url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET),
        connection=connection,
        redis=redis_client,
    )


def flow_context(
    *,
    zuora_url: str,
    connection: str,
    redis_client: redis.Redis,
    database_url: str,
    tmp_path: Path,
    options: Options,
    erp: Any = None,
) -> ItemContext:
    """The item-level flows of one connection in this process (nothing dispatched to workers)."""
    upgrade(database_url)
    return ItemContext(
        connection=connection,
        zuora=zuora_client(zuora_url, connection, redis_client),
        erp=erp if erp is not None else FakeErp(),
        ledger=Ledger.from_url(database_url),
        mapping=load_mapping(write_mapping(tmp_path / "mapping.toml")),
        dispatch=RecordingDispatcher(),
        options=options,
    )


class Zuora:
    """The control plane of a Zuora sandbox served over loopback."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def rows(self, table: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/_sandbox/state/{table}")
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()["records"]
        return rows

    def add(self, table: str, fields: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"/_sandbox/records/{table}", json=fields)
        response.raise_for_status()
        row: dict[str, Any] = response.json()
        return row

    def update(self, table: str, row_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        response = self.http.patch(f"/_sandbox/records/{table}/{row_id}", json=fields)
        response.raise_for_status()
        row: dict[str, Any] = response.json()
        return row

    def requests(self) -> dict[str, int]:
        counts: dict[str, int] = self.http.get("/_sandbox/requests").json()["counts"]
        return counts

    def configure_callouts(self, **config: Any) -> None:
        self.http.post("/_sandbox/callouts", json=config).raise_for_status()

    def callouts(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/_sandbox/callouts").json()
        return body


# Which Zuora records the sync moves, by sandbox table: (status that is synced, ERP kind).
SYNCED = {
    "invoices": ("Posted", "invoice"),
    "payments": ("Processed", "payment"),
    "refunds": ("Processed", "refund"),
    "credit-memos": ("Posted", "credit_memo"),
    "debit-memos": ("Posted", "debit_memo"),
}
NUMBER = {
    "invoices": "InvoiceNumber",
    "payments": "PaymentNumber",
    "refunds": "RefundNumber",
    "credit-memos": "MemoNumber",
    "debit-memos": "MemoNumber",
}


def acumatica_server(**config: Any) -> tuple[ThreadedServer, acumatica_sandbox.AcumaticaBackend]:
    app = acumatica_sandbox.create_app()
    backend = app.state.backend
    if config:
        backend.config.update(config)
    return ThreadedServer(app).start(), backend


def acumatica_env(url: str) -> dict[str, str]:
    return {
        "LEDGERBRIDGE_ERP": "acumatica",
        "LEDGERBRIDGE_ACUMATICA_URL": url,
        "LEDGERBRIDGE_ACUMATICA_ENDPOINT": acumatica_sandbox.DEFAULT_ENDPOINT,
        "LEDGERBRIDGE_ACUMATICA_USERNAME": acumatica_sandbox.DEFAULT_USERNAME,
        "LEDGERBRIDGE_ACUMATICA_PASSWORD": acumatica_sandbox.DEFAULT_PASSWORD,
        "LEDGERBRIDGE_ACUMATICA_TENANT": acumatica_sandbox.DEFAULT_TENANT,
        "LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE": "600000",
        "LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT": "4",
        "LEDGERBRIDGE_ACUMATICA_MAX_SESSIONS": "2",
    }


def acumatica_erp(url: str, connection: str, redis_client: redis.Redis) -> AcumaticaErp:
    return AcumaticaErp.from_target(
        AcumaticaTarget(
            url=url,
            endpoint=acumatica_sandbox.DEFAULT_ENDPOINT,
            username=acumatica_sandbox.DEFAULT_USERNAME,
            password=acumatica_sandbox.DEFAULT_PASSWORD,
            tenant=acumatica_sandbox.DEFAULT_TENANT,
            requests_per_minute=600_000,
            max_concurrent=4,
        ),
        connection=connection,
        redis=redis_client,
    )


def erp_documents(backend: acumatica_sandbox.AcumaticaBackend) -> dict[tuple[str, str], int]:
    """``{(kind, Zuora number): how many ERP documents carry it}`` in the Acumatica sandbox (the
    Invoice and Payment entities share AR documents, so each is read by its own types)."""
    counts: dict[tuple[str, str], int] = {}
    types = {
        "Invoice": (
            "Invoice",
            {"Invoice": "invoice", "Debit Memo": "debit_memo", "Credit Memo": "credit_memo"},
        ),
        "Payment": ("Payment", {"Payment": "payment", "Refund": "refund"}),
    }
    for entity, (_, kinds) in types.items():
        field = "CustomerOrder" if entity == "Invoice" else "PaymentRef"
        for row in backend.state(entity):
            kind = kinds.get(str(row.get("Type")))
            if kind is None:
                continue
            key = (kind, str(row.get(field)))
            counts[key] = counts.get(key, 0) + 1
    return counts


def expected_documents(zuora: Zuora) -> dict[tuple[str, str], str]:
    """``{(kind, number): zuora id}`` of every Zuora record the sync should post."""
    expected = {}
    for table, (status, kind) in SYNCED.items():
        for row in zuora.rows(table):
            if row.get("Status") == status:
                expected[(kind, str(row[NUMBER[table]]))] = row["Id"]
    return expected


def all_rows_marked(ledger: Any, connection: str) -> bool:
    """Whether the connection has ledger rows and every one of them is ``marked``."""
    states = ledger.counts_by_state(connection)
    return bool(states) and all(state == "marked" for _, state in states)


def unmarked(zuora: Zuora) -> list[str]:
    """Numbers of synced Zuora records not marked TransferredToAccounting=Yes."""
    missing = []
    for table, (status, _) in SYNCED.items():
        for row in zuora.rows(table):
            if row.get("Status") == status and row.get("TransferredToAccounting") != "Yes":
                missing.append(str(row[NUMBER[table]]))
    return missing


class Beat:
    """A ``celery beat`` process with the fleet's environment; killed at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Beat:
        log = open(self.log_dir / "beat.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                CELERY,
                "-A",
                "worker.app",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.log_dir / "celerybeat-schedule"),
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def item_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The item-level settings every worker/beat test shares (short intervals and timeouts)."""
    env = {
        "LEDGERBRIDGE_MAPPING_FILE": str(write_mapping(tmp_path / "mapping.toml")),
        "LEDGERBRIDGE_PULL_INTERVAL_SECONDS": "3",
        "LEDGERBRIDGE_EXTERNAL_PAYMENTS_POLL_SECONDS": "3",
        "LEDGERBRIDGE_PULL_OVERLAP_SECONDS": "30",
        "LEDGERBRIDGE_PULL_LOCK_SECONDS": "20",
        "LEDGERBRIDGE_SWEEP_INTERVAL_SECONDS": "3",
        "LEDGERBRIDGE_SWEEP_GRACE_SECONDS": "8",
        "LEDGERBRIDGE_POSTING_TIMEOUT_SECONDS": "15",
        "LEDGERBRIDGE_MARK_AUDIT_INTERVAL_SECONDS": "3600",
        "LEDGERBRIDGE_WORKER_CONCURRENCY": "2",
        "LEDGERBRIDGE_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def records_of(ctx: ItemContext, object_type: str) -> set[str]:
    """Zuora ids of the ledger's rows of ``object_type``."""
    from sqlmodel import select

    from shared.ledger.models import SyncRecord

    with ctx.ledger.session() as session:
        return set(
            session.exec(
                select(SyncRecord.zuora_id).where(
                    SyncRecord.connection == ctx.connection, SyncRecord.object_type == object_type
                )
            ).all()
        )


def spawn_worker(
    env: dict[str, str], queue: str, log_dir: Path, name: str, *, concurrency: int = 2
) -> subprocess.Popen[bytes]:
    """A Celery worker process that is not waited for (a replacement in a chaos test)."""
    log = open(log_dir / f"worker-{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            CELERY,
            "-A",
            "worker.app",
            "worker",
            "-Q",
            queue,
            "-n",
            f"{name}@%h",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and its pool children (its own process group)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def forget_queue(redis_url: str, queue: str) -> None:
    """Delete a test's own queue and its kombu bindings (unique names; other tests' keys stay)."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    finally:
        client.close()
