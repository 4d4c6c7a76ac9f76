"""The chaos suite: ledgerbridge's real processes - the callout receiver (``uvicorn worker.web:app``),
two Celery workers and beat - on a PostgreSQL ledger, moving one item-level backlog, closing one
period (summary GL) and taking a stream of callouts, while:

- a random worker is SIGKILLed every few seconds (a replacement is started each time), and beat
  and the receiver are SIGKILLed once each and started again;
- the suite's own Redis is flushed once and restarted once, and its own PostgreSQL restarted once;
- both vendor APIs fail 10 % of requests with a 5xx, 5 % with a 429, 2 % time out (beyond the
  client's timeout, or the connection is dropped) and 3 % of writes are committed and their answer
  lost (seeded, so every run injects the same pattern for the same requests); Zuora revokes its
  OAuth tokens every 100 calls;
- 1,000 callouts arrive: 30 % duplicate deliveries, 10 % with bad signatures, 5 % malformed.

Then, from the sandboxes' own state: every document is in Acumatica exactly once, for Zuora's
amounts, applied as Zuora applied it; every Zuora record is marked; every summary journal entry is
one GL batch with its lines and is marked; the close finished and reconciled; nothing a refused
callout named was ever asked of Zuora. The figures are printed as one line (``-s`` shows it) and
written to ``chaos-figures.json`` in the test's directory.

Every wait is bounded; every process, server and directory the suite made is gone afterwards.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.ledger.repo import Ledger
from tests.chaos import checks
from tests.chaos.callouts import (
    CalloutMix,
    CalloutSender,
    backlog_targets,
    expected_answers,
    plan_callouts,
    summary,
)
from tests.chaos.conftest import ChaosWorld
from tests.chaos.report import Figures
from tests.chaos.stack import REPO, wait_for
from tests.integration.item_level.support import Zuora, sigkill, unmarked
from worker.web import CALLOUT_PATH

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(480)]

SEED = 20261207
PERIOD = "December 2024"
# A few hundred documents: the backlog the item-level sync moves while everything else happens.
SIZES: dict[str, Any] = {
    "accounts": 40,
    "invoices": 170,
    "payments": 100,
    "refunds": 8,
    "credit_memos": 14,
    "debit_memos": 8,
    "large_invoices": 0,
    "tie_count": 40,
}
# The Procfile's processes with the intervals shortened as the other worker tests do: pulls every
# 5 s, the sweep every 3 s, a dead worker's posting claim over after 15 s, a lost create looked up
# again after 2 s and made again after 5 s, a close nobody drives resumed after 20 s.
SETTINGS = {
    "LEDGERBRIDGE_PULL_INTERVAL_SECONDS": "5",
    "LEDGERBRIDGE_EXTERNAL_PAYMENTS_POLL_SECONDS": "5",
    "LEDGERBRIDGE_PULL_OVERLAP_SECONDS": "30",
    "LEDGERBRIDGE_PULL_LOCK_SECONDS": "20",
    "LEDGERBRIDGE_SWEEP_INTERVAL_SECONDS": "3",
    "LEDGERBRIDGE_SWEEP_GRACE_SECONDS": "8",
    "LEDGERBRIDGE_POSTING_TIMEOUT_SECONDS": "15",
    "LEDGERBRIDGE_CLOSE_STALE_SECONDS": "20",
    "LEDGERBRIDGE_IN_DOUBT_QUIET_SECONDS": "5",
    "LEDGERBRIDGE_MARK_AUDIT_INTERVAL_SECONDS": "3600",
    "LEDGERBRIDGE_ZUORA_TIMEOUT_SECONDS": "5",
    # Released documents, so Acumatica applies payments, refunds and credit memos as Zuora did.
    "LEDGERBRIDGE_ITEM_RELEASE": "true",
    # A SIGKILLed worker keeps its Acumatica concurrency leases until they expire (the client's
    # timeout + 30 s): with a licence of 2 the fleet would wait on leaked leases for minutes.
    "LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT": "32",
    "LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE": "600000",
}
ZUORA_TIMEOUT = 5.0


def _conditional(shares: list[float]) -> list[float]:
    """Shares for rules tried in order, the first firing one winning, so that rule k fires on
    ``shares[k]`` of all requests."""
    left, out = 1.0, []
    for share in shares:
        out.append(share / left)
        left -= share
    return out


# 10 % 5xx, 5 % 429, 2 % timeouts on every request of both APIs; 3 % of writes committed, their
# answer lost. Zuora tries its rules in order (the first firing one answers); Acumatica draws each.
_Z500, _Z503, _Z429, _ZTIMEOUT = _conditional([0.05, 0.05, 0.05, 0.02])
ZUORA_FAULTS = [
    {"kind": "server_error", "status": 500, "share": _Z500},
    {"kind": "server_error", "status": 503, "share": _Z503},
    {"kind": "rate_limit", "share": _Z429, "reset_seconds": 1},
    {"kind": "timeout", "share": _ZTIMEOUT, "hang_seconds": ZUORA_TIMEOUT + 1},
    {"kind": "commit_then_drop", "endpoint": "PUT *", "share": 0.03},
    {"kind": "commit_then_drop", "endpoint": "POST /v1/*", "share": 0.03},
]
ACUMATICA_FAULTS = [
    {"kind": "status", "status": 500, "share": 0.05},
    {"kind": "status", "status": 503, "share": 0.05},
    {"kind": "status", "status": 429, "share": 0.05},
    {"kind": "drop", "share": 0.02},
    {"kind": "commit_then_drop", "method": "PUT", "share": 0.03},  # fires on creates only
]
REVOKE_TOKEN_EVERY = 100

CALLOUTS = CalloutMix(total=1000, duplicates=300, bad_signatures=100, malformed=50)
CALLOUT_SECONDS = 50.0
# The chaos, in seconds from its start: a worker SIGKILLed every KILL_EVERY seconds, and once each
# the events below.
CHAOS_SECONDS = 60.0
KILL_EVERY = 5.0
ONCE = (
    (12.5, "beat"),
    (17.5, "redis flush"),
    (22.5, "web"),
    (32.5, "redis restart"),
    (42.5, "postgres restart"),
)
SETTLE_SECONDS = 150.0


def test_chaos_loses_nothing_and_posts_nothing_twice(chaos_world, tmp_path):
    started = time.monotonic()
    world: ChaosWorld = chaos_world(seed=SEED, sizes=SIZES, settings=SETTINGS)
    rng = random.Random(SEED)
    figures = Figures()
    zuora = Zuora(world.zuora.url)
    _configure_sandboxes(world)
    deliveries = plan_callouts(
        rng, backlog_targets(zuora), [a["Id"] for a in zuora.rows("accounts")], world.secret, CALLOUTS
    )
    fleet = world.fleet
    fleet.spawn_worker()
    fleet.spawn_worker()
    fleet.wait_workers_ready()
    fleet.beat.start()
    fleet.web.start().wait_ready()
    close = subprocess.run(
        [sys.executable, "-m", "cli.main", "close", PERIOD], cwd=REPO, env=world.env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert close.returncode == 0, close.stdout + close.stderr
    sender = CalloutSender(
        world.fleet.web.url + CALLOUT_PATH, world.secret, Zuora(world.zuora.url), deliveries, CALLOUT_SECONDS
    ).start()
    try:
        _chaos(world, rng, figures)
        sender.join(timeout=CALLOUT_SECONDS + 120)
    finally:
        sender.stop()

    ledger = Ledger.from_url(world.database_url)
    try:
        chaos_over = time.monotonic()
        problems = _settle(world, zuora, ledger)
        figures.settle_seconds = time.monotonic() - chaos_over
        problems += _ledger_problems(world, ledger)
        notice_problems, figures.notice_resends = _notice_problems(world, ledger)
        problems += notice_problems
        _dump_ledger(ledger, tmp_path / "logs")
        fleet.close()  # nothing moves while the sandboxes are read
        erp = checks.ErpState(world.acumatica)
        document_problems, document_figures = checks.document_problems(zuora, erp)
        problems += document_problems
        problems += checks.mark_problems(zuora)
        journal_problems, figures.journal_entries = checks.journal_problems(
            zuora, erp, world.env["LEDGERBRIDGE_MAPPING_FILE"]
        )
        problems += journal_problems
        refused, _ = checks.refused_callout_problems(
            world.zuora.requests_served(), sender.figures.refused_ids
        )
        problems += refused
        answers = sender.figures.answers
        wrong = {a: n for a, n in answers.items() if not expected_answers(sender.figures)(a)}
        if wrong:
            problems.append(f"the receiver's final answers were not the ones each callout deserves: {wrong}")
    finally:
        ledger.dispose()

    figures.documents = document_figures["documents"]
    figures.erp_duplicates = document_figures["erp_duplicates"]
    figures.lost = document_figures["lost"]
    figures.callouts = summary(sender.figures)
    figures.faults = {
        "zuora": world.zuora.control("GET", "faults")["injected"],
        "acumatica": world.acumatica.control("GET", "faults")["injected"],
    }
    zuora_requests = world.zuora.control("GET", "requests")
    figures.zuora_token_revocations = zuora_requests["tokens_revoked"]
    figures.zuora_calls = zuora_requests["total"]
    figures.acumatica_calls = int(world.acumatica.control("GET", "requests").get("requests", 0))
    figures.notices = dict(Counter(str(body.get("event")) for _, body in world.webhook.notices()))
    figures.problems = len(problems)
    figures.wall_seconds = time.monotonic() - started
    figures.write(tmp_path / "chaos-figures.json")
    print("\n" + figures.line())

    assert not problems, (
        f"{len(problems)} problems after the chaos (logs in {tmp_path / 'logs'}):\n"
        + "\n".join(problems[:60])
    )


def _configure_sandboxes(world: ChaosWorld) -> None:
    world.zuora.control(
        "POST",
        "config",
        {
            "revoke_token_every": REVOKE_TOKEN_EVERY,
            # The close's jobs take a while, so its posting meets the chaos.
            "trial_balance": {"pending_seconds": 1, "processing_seconds": 3},
            "journal_run": {"pending_seconds": 2, "processing_seconds": 10},
        },
    )
    world.zuora.control("POST", "faults", {"rules": ZUORA_FAULTS, "replace": True, "seed": SEED})
    # Sessions left open by killed workers must not lock the fleet out; releases finish at once.
    world.acumatica.control("POST", "config", {"max_sessions": 100, "action_polls": 0})
    world.acumatica.control("POST", "faults", {"rules": ACUMATICA_FAULTS, "replace": True, "seed": SEED})


def _chaos(world: ChaosWorld, rng: random.Random, figures: Figures) -> None:
    """The schedule: a worker SIGKILLed (and replaced) every ``KILL_EVERY`` seconds; the ``ONCE``
    events at their times."""
    fleet = world.fleet
    events: list[tuple[float, str]] = [
        (KILL_EVERY * n, "worker") for n in range(1, int(CHAOS_SECONDS / KILL_EVERY) + 1)
    ]
    events += list(ONCE)
    start = time.monotonic()
    for at, what in sorted(events):
        time.sleep(max(0.0, start + at - time.monotonic()))
        if what == "worker":
            live = fleet.live_workers()
            sigkill(rng.choice(live))
            fleet.spawn_worker()
            figures.worker_kills += 1
        elif what == "beat":
            fleet.kill_beat_and_restart()
            figures.beat_restarts += 1
        elif what == "web":
            fleet.kill_web_and_restart()
            figures.web_restarts += 1
        elif what == "redis flush":
            world.redis.flush()
            figures.redis_flushes += 1
        elif what == "redis restart":
            world.redis.restart()
            figures.redis_restarts += 1
        elif what == "postgres restart":
            world.postgres.restart()
            figures.postgres_restarts += 1


def _settle(world: ChaosWorld, zuora: Zuora, ledger: Ledger) -> list[str]:
    """Wait (bounded) until the work is done as the sandboxes and the ledger see it: every Zuora
    record marked, the close run over, no ledger row or callout left in flight."""
    state: dict[str, Any] = {}

    def done() -> bool:
        state["unmarked"] = len(unmarked(zuora))
        runs = ledger.latest_close_runs("chaos", limit=5)
        state["close"] = [(r.id, r.status, r.step) for r in runs]
        state["rows"] = _open_rows(ledger)
        state["callouts"] = _open_callouts(ledger)
        state["unreleased"] = _unreleased(ledger)
        state["applications"] = _applications_due(ledger)
        return (
            state["unmarked"] == 0
            and bool(runs)
            and all(r.status != "running" for r in runs)
            and not state["rows"]
            and not state["callouts"]
            and not state["unreleased"]
            and not state["applications"]
        )

    try:
        wait_for(done, timeout=SETTLE_SECONDS, interval=2.0, what="the work to settle")
    except AssertionError as exc:
        return [f"{exc}: {state}"]
    return []


def _open_rows(ledger: Ledger) -> dict[str, int]:
    counts = ledger.counts_by_state("chaos")
    return {f"{kind} {state}": n for (kind, state), n in counts.items() if state != "marked"}


def _unreleased(ledger: Ledger) -> int:
    """Documents posted but not released (their release failed; the sweep releases them again):
    what applies to them counts in Acumatica only once they are."""
    with ledger.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "select count(*) from sync_record where connection = 'chaos' and erp_ref is not null "
                    "and not erp_released and state in ('posted', 'marked') and object_type in "
                    "('invoice', 'debit_memo', 'credit_memo', 'payment', 'refund')"
                )
            ).scalar_one()
        )


def _applications_due(ledger: Ledger) -> int:
    """Applications a document was created without whose target is in the ERP now (the sweep
    sends the document to apply them): Acumatica's balances count them only once applied."""
    with ledger.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "select count(*) from erp_application a join sync_record t on t.connection = "
                    "a.connection and t.object_type = a.target_type and t.zuora_id = a.target_id "
                    "where a.connection = 'chaos' and a.state <> 'applied' and t.state in ('posted', 'marked')"
                )
            ).scalar_one()
        )


def _open_callouts(ledger: Ledger) -> dict[str, int]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select state, count(*) from callout_notification where connection = 'chaos' group by state"
            )
        ).all()
    return {str(state): int(n) for state, n in rows if state not in ("done", "failed")}


def _ledger_problems(world: ChaosWorld, ledger: Ledger) -> list[str]:
    """What the ledger itself says went wrong: the close run, records parked or not marked."""
    problems = []
    runs = ledger.latest_close_runs("chaos", limit=5)
    if len(runs) != 1:
        problems.append(f"{len(runs)} close runs, not one: {[(r.id, r.status) for r in runs]}")
    for run in runs:
        if run.status != "done":
            problems.append(f"close run {run.id} is {run.status} at step {run.step}: {run.error}")
        elif (run.details.get("reconcile") or {}).get("differences"):
            problems.append(
                f"close run {run.id} did not reconcile: {run.details['reconcile']['differences']}"
            )
    problems += [f"{n} ledger rows are {what}" for what, n in sorted(_open_rows(ledger).items())]
    if unreleased := _unreleased(ledger):
        problems.append(f"{unreleased} documents are posted but not released in the ERP")
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select object_id, state, count(*) from callout_notification where connection = 'chaos' "
                "and state <> 'done' group by object_id, state"
            )
        ).all()
    problems += [f"callout for {object_id} is {state} ({n}x)" for object_id, state, n in rows]
    return problems


def _notice_problems(world: ChaosWorld, ledger: Ledger) -> tuple[list[str], int]:
    """Every notice of the outbox delivered and received by the webhook; a receiver that drops a
    resend by its ``notice_id`` sees each once. Returns the problems and how many resends came
    (a worker killed between a delivery and its commit sends it again: at least once, by design)."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.text("select id, event, delivered_at from notice_outbox order by id")).all()
    received = Counter(body.get("notice_id") for _, body in world.webhook.notices())
    problems = [f"notice {id_} ({event}) was never delivered" for id_, event, at in rows if at is None]
    problems += [
        f"notice {id_} ({event}) is marked delivered but the webhook never received it"
        for id_, event, at in rows
        if at is not None and received[id_] == 0
    ]
    if not any(event == "close.completed" for _, event, _ in rows):
        problems.append(f"no close.completed notice in the outbox: {[event for _, event, _ in rows]}")
    strays = sorted(str(k) for k in received if k not in {r[0] for r in rows})
    if strays:
        problems.append(f"the webhook received notices the outbox does not hold: {strays}")
    return problems, sum(n - 1 for n in received.values() if n > 1)


def _dump_ledger(ledger: Ledger, folder: Path) -> None:
    """The ledger's records, close runs, callouts and non-HTTP audit lines as JSON lines (for a
    person reading a failed run; the database itself is deleted with its server)."""
    queries = {
        "sync_record": "select id, object_type, zuora_id, zuora_number, state, attempts, last_error, erp_ref, "
        "erp_released, source, posted_payload, created_at, posted_at, marked_at from sync_record order by id",
        "close_run": "select * from close_run order by id",
        "callout_notification": "select * from callout_notification order by id",
        "audit_event": "select at, kind, subject, message from audit_event where kind <> 'http' order by id",
    }
    with ledger.engine.connect() as conn:
        for name, query in queries.items():
            with (folder / f"ledger-{name}.jsonl").open("w") as out:
                for row in conn.execute(sa.text(query)).mappings():
                    out.write(json.dumps(dict(row), default=str) + "\n")
