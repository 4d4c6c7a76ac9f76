"""Workers SIGKILLed again and again during a 1,000-document sync, and Redis flushed once mid-way:
the sweep completes the work and the ERP has every document exactly once.

Redis keeps nothing on disk on these machines, so a flush is what a Redis restart looks like: the
queue, the unacknowledged messages, the locks, the tokens and the ERP session all vanish. This test
uses its own Redis database (13) and flushes only that one.
"""

from __future__ import annotations

import time

import pytest
import redis

from sandbox.acumatica.faults import FaultRule
from sandbox.zuora import Sizes
from shared.ledger.repo import Ledger
from shared.ledger.states import POSTED, POSTING
from tests.integration.item_level.support import (
    Beat,
    Zuora,
    acumatica_env,
    acumatica_server,
    erp_documents,
    expected_documents,
    item_env,
    sigkill,
    spawn_worker,
    unmarked,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CHAOS_REDIS = "redis://127.0.0.1:6379/13"
ONE_THOUSAND = Sizes(
    accounts=60,
    invoices=600,
    payments=250,
    refunds=30,
    credit_memos=75,
    debit_memos=45,
    tie_count=100,
    large_invoices=0,
)
KILLS = 5
KILL_EVERY = 2.5


def test_sigkilled_workers_and_a_flushed_redis_lose_nothing_and_post_nothing_twice(
    tmp_path, worker_fleet, zuora_sandbox, connection_name
):
    server = zuora_sandbox(seed=33, sizes=ONE_THOUSAND)
    zuora = Zuora(server.url)
    # Each ERP call takes 25 ms, so the kills land while documents are being posted.
    acumatica, erp = acumatica_server(latency_ms=25.0, max_sessions=50)
    # And some creates are committed but their answer is lost: those rows are in doubt and must be
    # found by natural key, not created again.
    for entity in ("Invoice", "Payment"):
        erp.faults.add(
            [FaultRule.from_json({"kind": "commit_then_drop", "method": "PUT", "entity": entity, "next": 4})]
        )
    env = {**acumatica_env(acumatica.url), **item_env(tmp_path, LEDGERBRIDGE_REDIS_URL=CHAOS_REDIS)}
    # A SIGKILLed worker keeps its Acumatica concurrency leases until they expire (the client's
    # timeout + 30 s): a licence as small as 4 would stall on leaked leases for minutes.
    env["LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT"] = "32"
    fleet = worker_fleet(zuora_url=server.url, **env)
    flusher = redis.Redis.from_url(CHAOS_REDIS)
    flusher.flushdb()  # our own database: nothing else lives in 13
    beat = None
    left = 0
    try:
        expected = expected_documents(zuora)
        fleet.start(2, concurrency=2)
        beat = Beat(fleet.env, tmp_path).start()
        for kill in range(KILLS):
            time.sleep(KILL_EVERY)
            victim = next(p for p in fleet.procs if p.poll() is None)
            sigkill(victim)
            if kill == 1:
                flusher.flushdb()  # mid-way: the queue, the locks, the tokens, the session - gone
                left = len(unmarked(zuora))
            fleet.procs.append(spawn_worker(fleet.env, fleet.queue, tmp_path, f"replacement{kill}"))
        assert left > 0, "the flush must land while work is left"

        wait_until(lambda: not unmarked(zuora), timeout=240, interval=2, what="every Zuora record marked")

        documents = erp_documents(erp)
        assert {key: documents.get(key, 0) for key in expected} == dict.fromkeys(expected, 1)
        assert sum(documents.values()) == len(expected)
        ledger = Ledger.from_url(fleet.env["LEDGERBRIDGE_DATABASE_URL"])
        wait_until(
            lambda: (
                not any(
                    state in (POSTING, POSTED, "pending")
                    for (_, state) in ledger.counts_by_state(connection_name)
                )
            ),
            timeout=60,
            what="no ledger row left pending, posting or posted",
        )
        states = ledger.counts_by_state(connection_name)
        assert {state for (_, state) in states} == {"marked"}
        assert [f["fired"] for f in erp.faults.rules()] == [4, 4]
        ledger.dispose()
    finally:
        if beat is not None:
            beat.stop()
        fleet.stop()
        acumatica.stop()
        flusher.flushdb()
        flusher.close()
