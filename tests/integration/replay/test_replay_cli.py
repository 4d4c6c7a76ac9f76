"""``ledgerbridge replay`` as an engineer runs it: a subprocess with the deployment's environment,
the Zuora and Acumatica sandboxes over loopback HTTP, real Redis, a SQLite ledger, and a real
Celery worker marking what the command posts.

The story: a sync pulls everything while no worker runs (every record pending); records are put
in each state; ``replay --dry-run`` is run on each (nothing changes, not one PUT); a record with
an unmapped code is parked by ``replay``, shown again with ``--dry-run`` after Finance fixes the
mapping, then posted by ``replay``; replaying a posted record without ``--force`` makes no PUT,
with ``--force`` it only looks the document up; ``replay --failed`` re-drives the rest; in the end
every document is in Acumatica exactly once and marked in Zuora."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.zuora import Sizes
from shared.ledger import applications as ledger_applications
from shared.ledger import states
from shared.ledger.repo import Ledger
from tests.chaos import checks
from tests.integration.item_level.support import (
    REPO,
    Beat,
    Zuora,
    acumatica_env,
    acumatica_server,
    erp_documents,
    expected_documents,
    forget_queue,
    item_env,
    unmarked,
    wait_until,
)
from tests.unit.item_level.support import write_mapping

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SMALL = Sizes(
    accounts=5,
    invoices=14,
    payments=6,
    refunds=1,
    credit_memos=2,
    debit_memos=2,
    tie_count=0,
    large_invoices=0,
)
DROPPED = '"Subscription Revenue"'


def ledgerbridge(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def puts(backend) -> int:
    """Every PUT the Acumatica sandbox has answered (creates and upserts)."""
    return sum(n for call, n in backend.counts()["calls"].items() if call.startswith("PUT "))


class World:
    def __init__(
        self, tmp_path, worker_fleet, zuora_sandbox, connection_name, *, acumatica=None, **settings: str
    ) -> None:
        self.zuora = Zuora(zuora_sandbox(seed=12, sizes=SMALL).url)
        self.acumatica, self.erp = acumatica_server(**(acumatica or {}))
        env = {**acumatica_env(self.acumatica.url), **item_env(tmp_path)}
        self.mapping = write_mapping(tmp_path / "mapping.toml", drop=(DROPPED,))  # Finance forgot a code
        env["LEDGERBRIDGE_MAPPING_FILE"] = str(self.mapping)
        env.update(settings)
        self.fleet = worker_fleet(zuora_url=self.zuora.url, **env)
        self.connection = connection_name
        self.ledger = Ledger.from_url(self.fleet.env["LEDGERBRIDGE_DATABASE_URL"])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ledgerbridge(self.fleet.env, *args)

    def dry_run(self, query: str) -> tuple[int, dict[str, Any]]:
        result = self.cli("replay", query, "--dry-run", "--json")
        assert result.returncode in (0, 1), result.stdout + result.stderr
        (item,) = json.loads(result.stdout)["records"]
        return result.returncode, item

    def record(self, number: str):
        (row,) = self.ledger.find_records(self.connection, number)
        return row

    def states(self) -> dict[str, int]:
        """How many rows are in each state."""
        counts: dict[str, int] = {}
        for (_, state), n in self.ledger.counts_by_state(self.connection).items():
            counts[state] = counts.get(state, 0) + n
        return counts

    def state_of(self, number: str) -> str | None:
        """The record's state, None before it is pulled."""
        rows = self.ledger.find_records(self.connection, number)
        return rows[0].state if rows else None

    def invoice_numbers(self, *, with_dropped_code: bool) -> list[str]:
        dropped = {
            i["InvoiceId"]
            for i in self.zuora.rows("invoice-items")
            if i["AccountingCode"] == DROPPED.strip('"')
        }
        return sorted(
            i["InvoiceNumber"]
            for i in self.zuora.rows("invoices")
            if i["Status"] == "Posted" and (i["Id"] in dropped) == with_dropped_code
        )

    def stop(self) -> None:
        self.fleet.stop()
        self.acumatica.stop()
        forget_queue(self.fleet.env["LEDGERBRIDGE_REDIS_URL"], self.fleet.queue)
        self.ledger.dispose()


@pytest.fixture
def world(tmp_path, worker_fleet, zuora_sandbox, connection_name):
    made = World(tmp_path, worker_fleet, zuora_sandbox, connection_name)
    yield made
    made.stop()


def test_replay_dry_run_in_every_state_then_replay_posts_each_document_once(world):
    # 1. Everything pulled, nothing posted: no worker is running yet.
    synced = world.cli("sync")
    assert synced.returncode == 0, synced.stderr
    clean = world.invoice_numbers(with_dropped_code=False)
    broken = world.invoice_numbers(with_dropped_code=True)
    assert len(clean) >= 4 and broken
    pending, failed, posting, posted = clean[:4]
    with world.ledger.session() as session:
        states.fail(session, world.record(failed).id, "the ERP refused it: period closed")
        # A worker that died mid-post: in doubt once its posting timeout has passed.
        states.begin_posting(session, world.record(posting).id, timeout=timedelta(seconds=5))
    replayed = world.cli("replay", posted)  # posted now, by this process
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    parked = world.cli("replay", broken[0])  # the unmapped code parks it
    assert parked.returncode == 1
    assert "unmapped account 'Subscription Revenue'" in parked.stdout
    marked_account = world.record(posted).account_id

    # 2. A dry run in each state changes nothing and sends nothing to the ERP.
    before_puts = puts(world.erp)
    shown = {}
    for number in (pending, posting, posted, failed, broken[0]):
        snapshot = world.record(number)
        code, item = world.dry_run(number)
        after = world.record(number)
        assert (after.state, after.version) == (snapshot.state, snapshot.version), number
        shown[snapshot.state] = (code, item)
    code, account = world.dry_run(f"account:{marked_account}")
    shown["marked"] = (code, account)
    assert puts(world.erp) == before_puts
    assert set(shown) == {"pending", "posting", "posted", "marked", "failed", "parked"}
    for state in ("pending", "posting", "posted", "marked", "failed"):
        code, item = shown[state]
        assert code == 0, (state, item)
        assert item["record"]["state"] == state
        assert item["fetched_from_zuora"] is True
        assert item["request"]["target"] == "acumatica"
    assert shown["pending"][1]["request"]["operation"] == "PUT Invoice"
    assert shown["marked"][1]["request"]["operation"] == "PUT Customer"
    assert shown["posted"][1]["request"]["body"]["CustomerOrder"] == {"value": posted}
    for state in ("posting", "posted", "marked"):
        assert shown[state][1]["diff"] == "", state  # unchanged since it was sent
    assert shown["pending"][1]["previous_payload"] is None
    code, item = shown["parked"]
    assert code == 1
    assert "unmapped account 'Subscription Revenue'" in item["problem"]

    # 3. Finance fixes the mapping: the dry run shows the document, then the replay posts it.
    write_mapping(world.mapping)
    code, item = world.dry_run(broken[0])
    assert code == 0 and item["problem"] is None
    assert item["would"] == "return it to pending and post the payload above (one ERP call)"
    assert puts(world.erp) == before_puts
    fixed = world.cli("replay", broken[0], "--reason", "Subscription Revenue mapped")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"invoice {broken[0]}: parked -> posted: posted as Invoice/" in fixed.stdout

    # 4. A posted record is left alone: no PUT at all; --force only looks it up.
    before_puts = puts(world.erp)
    again = world.cli("replay", posted)
    assert again.returncode == 0
    assert f"already posted as {world.record(posted).erp_ref}; nothing done" in " ".join(again.stdout.split())
    forced = world.cli("replay", posted, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "the ERP has it as" in forced.stdout
    assert puts(world.erp) == before_puts

    # 5. The workers post the rest; replay --failed re-drives the failed one, and the in-doubt
    #    one is looked up by natural key (after its posting timeout) and posted once.
    world.fleet.start(1, concurrency=2)
    redriven = world.cli("replay", "--failed")
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    wait_until(
        lambda: (world.record(posting).next_attempt_at or datetime.now(UTC)) <= datetime.now(UTC),
        timeout=30,
        what="the in-doubt row past its posting timeout",
    )
    doubt = world.cli("replay", posting)
    assert doubt.returncode == 0, doubt.stdout + doubt.stderr
    wait_until(lambda: not unmarked(world.zuora), timeout=120, interval=1, what="every Zuora record marked")

    expected = expected_documents(world.zuora)
    documents = erp_documents(world.erp)
    assert {key: documents.get(key, 0) for key in expected} == dict.fromkeys(expected, 1)
    assert sum(documents.values()) == len(expected)
    code, item = world.dry_run(posted)
    assert item["record"]["state"] == "marked" and item["diff"] == ""


@pytest.fixture
def releasing_world(tmp_path, worker_fleet, zuora_sandbox, connection_name):
    # Releases answer at once (no 202 to poll): the story is about applications, not actions.
    made = World(
        tmp_path, worker_fleet, zuora_sandbox, connection_name,
        acumatica={"action_polls": 0}, LEDGERBRIDGE_ITEM_RELEASE="true",
    )  # fmt: skip
    yield made
    made.stop()


def test_payments_posted_while_their_invoices_were_parked_are_applied_once_the_invoices_are_fixed(
    releasing_world, tmp_path
):
    """The fleet (a worker and beat) syncs everything; the invoices with the unmapped code park and
    the payments that pay them are posted unapplied, their applications kept waiting. Finance fixes
    the mapping and replays what is parked: the sweep applies each waiting application, and every
    Acumatica invoice is open for what Zuora says, to the cent."""
    world = releasing_world
    broken = world.invoice_numbers(with_dropped_code=True)
    invoices = {i["Id"]: i["InvoiceNumber"] for i in world.zuora.rows("invoices")}
    payments = {p["Id"]: p["PaymentNumber"] for p in world.zuora.rows("payments")}
    paying_broken = sorted(
        payments[a["PaymentId"]]
        for a in world.zuora.rows("payment-applications")
        if invoices.get(a.get("InvoiceId") or "") in broken
    )
    assert paying_broken, "the seed has payments of invoices with the unmapped code"
    world.fleet.start(1, concurrency=2)
    beat = Beat(world.fleet.env, tmp_path).start()
    try:
        wait_until(
            lambda: (
                all(world.state_of(n) == "parked" for n in broken)
                and all(world.state_of(n) == "marked" for n in paying_broken)
                and set(world.states()) <= {"parked", "marked"}
            ),
            timeout=120,
            interval=1,
            what="the broken invoices parked, everything else (the payments that pay them too) marked",
        )
        problems, _ = checks.document_problems(world.zuora, checks.ErpState(world.erp))
        for number in paying_broken:
            assert any(
                p.startswith(f"Payment {number} is applied in Acumatica to nothing") for p in problems
            ), problems
        explained = world.cli("explain", paying_broken[0])
        assert "is kept to be applied in the ERP once" in " ".join(explained.stdout.split())

        write_mapping(world.mapping)
        fixed = world.cli("replay", "--failed", "--reason", "Subscription Revenue mapped")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr

        def waiting() -> dict[str, int]:
            with world.ledger.reading() as session:
                return ledger_applications.counts(session, world.connection)

        wait_until(
            lambda: set(waiting()) == {"applied"},
            timeout=90,
            interval=1,
            what="every waiting application applied",
        )
        assert waiting()["applied"] == len(paying_broken)
        wait_until(
            lambda: not unmarked(world.zuora), timeout=60, interval=1, what="every Zuora record marked"
        )
    finally:
        beat.stop()

    problems, figures = checks.document_problems(world.zuora, checks.ErpState(world.erp))
    assert problems == []
    assert (figures["erp_duplicates"], figures["lost"]) == (0, 0)
    explained = world.cli("explain", paying_broken[0])
    assert "applied in the ERP" in explained.stdout
