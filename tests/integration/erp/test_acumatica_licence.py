# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""The fleet stays inside an Acumatica licence: four worker processes, one licence, the sandbox
counting (acumatica-api.md section 5.2, pitfall 16).

The sandbox is configured as a licence of 60 requests per minute and 2 concurrent requests; each
of four OS processes creates invoices through its own ``AcumaticaErp`` whose connection carries
the same limits, so only the client's Redis limiter (shared by the processes) keeps them under
the licence. More than 60 requests are made, so the per-minute limit binds (about 80 s).

Which per-minute figure to check: the licence counts requests in a minute that starts at that
minute's first request, so neither calendar minutes nor any one fixed window is the whole story;
the sandbox's *sliding* 60 s window is the strictest measure (no 60 s window of arrivals holds
more) and is the one asserted. The client's token bucket (1 permit per second, burst 1, Redis
time) guarantees at most 60 permits in any 60 s window, and a permit is taken the moment before
its request is sent (after the concurrency slot), so arrivals follow permits by a loopback hop.
That hop's jitter cannot be removed: if 61 consecutive permits were granted exactly one second
apart, a first request delayed a few milliseconds more than the 61st would put 61 arrivals into
one 60 s window. Hence the one documented request of margin on the sliding window; two or more
extra requests would need a second of jitter and fail the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKER = Path(__file__).with_name("licence_worker.py")
REPO = Path(__file__).resolve().parents[3]
PROCESSES = 4
# 4 x 17 creates + 4 customer reads + 1 sign-in = 73 licensed requests, plus a few 401s and
# sign-ins near the end: a process that finishes logs out the shared session if it signed it in.
INVOICES_EACH = 17
LIMIT_PER_MINUTE = 60
LIMIT_CONCURRENT = 2
# Arrival jitter on loopback can shift at most one request across a window edge (see above).
JITTER_MARGIN = 1


def test_four_worker_processes_stay_inside_60_per_minute_and_2_concurrent(
    acumatica_sandbox, redis_url, real_redis, connection_name, tmp_path
):
    sandbox = acumatica_sandbox()
    customers = [f"LIC{i}" for i in range(1, PROCESSES + 1)]
    sandbox.seed(customers=[{"CustomerID": c, "CustomerName": f"{c} Inc."} for c in customers])
    sandbox.config(requests_per_minute=LIMIT_PER_MINUTE, max_concurrent=LIMIT_CONCURRENT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
    procs = []
    for customer in customers:
        log = (tmp_path / f"{customer}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    "--url",
                    sandbox.url,
                    "--redis",
                    redis_url,
                    "--connection",
                    connection_name,
                    "--customer",
                    customer,
                    "--count",
                    str(INVOICES_EACH),
                    "--requests-per-minute",
                    str(LIMIT_PER_MINUTE),
                    "--max-concurrent",
                    str(LIMIT_CONCURRENT),
                    "--out",
                    str(tmp_path / f"{customer}.json"),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    ready_key = f"ledgerbridge:{connection_name}:test:ready"
    try:
        deadline = time.monotonic() + 60
        while real_redis.llen(ready_key) < PROCESSES:
            assert time.monotonic() < deadline, "the workers did not start"
            assert all(p.poll() is None for p in procs), "a worker exited early"
            time.sleep(0.05)
        sandbox.reset_counts()
        started = time.monotonic()
        real_redis.set(f"ledgerbridge:{connection_name}:test:go", "1", ex=300)
        codes = [p.wait(timeout=180) for p in procs]
        duration = time.monotonic() - started
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for key in real_redis.scan_iter(match=f"ledgerbridge:{connection_name}:*"):
            real_redis.delete(key)

    logs = {c: (tmp_path / f"{c}.log").read_text() for c in customers}
    assert codes == [0] * PROCESSES, logs
    results = [json.loads((tmp_path / f"{c}.json").read_text()) for c in customers]
    counts = sandbox.counts()
    invoices = [d["CustomerOrder"] for d in sandbox.state("Invoice")]
    figures = {
        "requests": counts["requests"],
        "max_per_sliding_minute": counts["max_per_sliding_minute"],
        "max_per_calendar_minute": counts["max_per_calendar_minute"],
        "max_concurrent_observed": counts["max_concurrent_observed"],
        "429": counts["statuses"].get("429", 0),
        "declined": counts["declined"],
        "delayed_by_licence": counts["delayed"],
        "duration_s": round(duration, 1),
        "client_events": [r["events"] for r in results],
    }
    print(f"\nlicence figures: {json.dumps(figures)}")

    # Nothing lost, nothing twice: every invoice exists exactly once.
    expected = sorted(f"{c}-{n:04d}" for c in customers for n in range(1, INVOICES_EACH + 1))
    assert sorted(invoices) == expected
    # A declined request never reaches the handlers (section 5.2: it is not processed), so every
    # counted create is one invoice: none was sent twice.
    assert counts["calls"]["PUT Invoice"] == len(expected)
    # The minute limit was reached, and the fleet stayed inside the licence.
    assert counts["requests"] > LIMIT_PER_MINUTE
    assert counts["max_per_sliding_minute"] <= LIMIT_PER_MINUTE + JITTER_MARGIN
    assert counts["max_concurrent_observed"] <= LIMIT_CONCURRENT
    assert counts["declined"].get("queue_full", 0) == counts["declined"].get("queue_timeout", 0) == 0
