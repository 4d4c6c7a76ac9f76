"""``ledgerbridge sync`` and ``ledgerbridge status`` as an engineer runs them: a subprocess with the
deployment's environment, a real worker posting what the command pulls, the GL file export."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from sandbox.zuora import Sizes
from shared.coordination.run_lock import RunLock
from tests.integration.item_level.support import REPO, forget_queue, item_env

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SMALL = Sizes(
    accounts=6,
    invoices=40,
    payments=20,
    refunds=2,
    credit_memos=4,
    debit_memos=3,
    tie_count=10,
    large_invoices=0,
)


def ledgerbridge(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def deployment(tmp_path, worker_fleet, zuora_sandbox):
    server = zuora_sandbox(seed=4, sizes=SMALL)
    fleet = worker_fleet(zuora_url=server.url, **item_env(tmp_path))
    fleet.start(1, concurrency=2)
    yield fleet
    fleet.stop()
    forget_queue(fleet.env["LEDGERBRIDGE_REDIS_URL"], fleet.queue)


def test_sync_wait_pulls_every_stream_and_waits_until_all_is_marked(deployment, connection_name):
    result = ledgerbridge(deployment.env, "sync", "--wait", "--timeout", "120")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "everything pulled is posted and marked" in result.stdout
    status = json.loads(ledgerbridge(deployment.env, "status", "--json").stdout)
    assert status["connection"] == connection_name
    for row in status["streams"]:
        assert row["mark"] is not None, row
        assert row["last_status"] == "ok"
        assert {state for state, n in row["counts"].items() if n} == {"marked"}, row
        assert (row["missed_by_push"], row["missed_by_mark"]) == (0, 0)
    table = ledgerbridge(deployment.env, "status").stdout
    assert "missed by push" in table and "invoices" in table


def test_sync_skips_a_stream_another_process_is_pulling(deployment, connection_name, redis_url):
    client = redis.Redis.from_url(redis_url)
    held = RunLock(client, connection_name, "pull:invoices", ttl=60)
    assert held.acquire()
    try:
        result = ledgerbridge(deployment.env, "sync", "invoices")
    finally:
        held.release()
        client.close()
    assert result.returncode == 0, result.stderr
    assert "invoices: another pull is running" in result.stdout
    status = json.loads(ledgerbridge(deployment.env, "status", "--json").stdout)
    invoices = next(s for s in status["streams"] if s["stream"] == "invoices")
    assert invoices["run_started_at"] is None


def test_sync_since_backfills_with_a_progress_bar(deployment):
    result = ledgerbridge(deployment.env, "sync", "invoices", "--since", "2024-12-01")
    assert result.returncode == 0, result.stderr
    assert "invoices" in result.stdout
    assert "rows read" in result.stdout
    assert "100%" in result.stdout or "━" in result.stdout


def test_sync_refuses_an_unknown_stream(deployment):
    result = ledgerbridge(deployment.env, "sync", "orders")
    assert result.returncode == 2
    assert "unknown stream 'orders'" in result.stderr
