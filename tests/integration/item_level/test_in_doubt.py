"""A create whose answer is lost settles in seconds, not after the posting lease.

A real worker posts to the Acumatica sandbox over HTTP while the sandbox commits some creates and
drops the connection before answering, and answers 500 to others without doing the work. The
posting lease is the production default (15 minutes): the worker that lost an answer looks the
document up by natural key seconds later, so ``ledgerbridge sync --wait`` ends well inside it,
with every document in the ERP exactly once.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from sandbox.acumatica.faults import FaultRule
from shared.item_level.queries import settle_times
from shared.ledger.repo import Ledger
from tests.integration.item_level.support import (
    Zuora,
    acumatica_env,
    acumatica_server,
    erp_documents,
    expected_documents,
    forget_queue,
    item_env,
)
from tests.integration.item_level.test_cli import SMALL, ledgerbridge

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LEASE = 900  # seconds: the default posting lease, far longer than the command may wait


def test_lost_answers_are_looked_up_in_seconds_and_sync_wait_ends_well_inside_the_lease(
    tmp_path, worker_fleet, zuora_sandbox, connection_name
):
    server = zuora_sandbox(seed=4, sizes=SMALL)
    zuora = Zuora(server.url)
    acumatica, erp = acumatica_server()
    erp.faults.add(
        [
            FaultRule.from_json(
                {"kind": "commit_then_drop", "method": "PUT", "entity": "Invoice", "next": 3}
            ),
            FaultRule.from_json(
                {"kind": "commit_then_drop", "method": "PUT", "entity": "Payment", "next": 2}
            ),
            FaultRule.from_json(
                {"kind": "status", "status": 500, "method": "PUT", "entity": "Invoice", "next": 2}
            ),
        ]
    )
    env = {
        **acumatica_env(acumatica.url),
        **item_env(tmp_path, LEDGERBRIDGE_POSTING_TIMEOUT_SECONDS=str(LEASE)),
    }
    fleet = worker_fleet(zuora_url=server.url, **env)
    fleet.start(1, concurrency=2)
    ledger = Ledger.from_url(fleet.env["LEDGERBRIDGE_DATABASE_URL"])
    try:
        expected = expected_documents(zuora)
        result = ledgerbridge(fleet.env, "sync", "--wait", "--timeout", "240", timeout=300)

        assert result.returncode == 0, result.stdout + result.stderr
        assert "everything pulled is posted and marked" in result.stdout
        assert [rule["fired"] for rule in erp.faults.rules()] == [3, 2, 2]
        documents = erp_documents(erp)
        assert {key: documents.get(key, 0) for key in expected} == dict.fromkeys(expected, 1)
        assert sum(documents.values()) == len(expected)
        # Every lost answer was settled by a lookup, each one long before its lease ran out.
        times = settle_times(ledger, connection_name)
        assert len(times) == 7
        assert max(times) < timedelta(seconds=LEASE / 10), times
    finally:
        ledger.dispose()
        fleet.stop()
        acumatica.stop()
        forget_queue(fleet.env["LEDGERBRIDGE_REDIS_URL"], fleet.queue)
