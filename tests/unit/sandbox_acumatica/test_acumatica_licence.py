"""The licence: cores, queue, per-minute window and counters (acumatica-api.md section 5.2).

The ``Licence`` is driven directly on one event loop with a hand-moved monotonic clock, so the
queue semantics are tested without depending on timing.
"""

from __future__ import annotations

import asyncio

from sandbox.acumatica.config import SandboxConfig
from sandbox.acumatica.licence import Licence


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _licence(clock: Clock | None = None) -> Licence:
    clock = clock or Clock()
    return Licence(clock=clock, wall=lambda: 1_750_000_000.0 + clock.now)


def test_per_minute_limit_declines_beyond_the_limit_and_resets_with_the_window():
    clock = Clock()
    licence = _licence(clock)
    config = SandboxConfig(requests_per_minute=3, per_minute_delay=False)

    async def run() -> list[str | None]:
        results = []
        for _ in range(4):
            licence.arrive()
            reason = await licence.enter(config)
            if reason is None:
                licence.release_core()
            results.append(reason)
        clock.now += 60
        licence.arrive()
        results.append(await licence.enter(config))
        return results

    assert asyncio.run(run()) == [None, None, None, "per_minute", None]
    assert licence.snapshot()["declined"] == {"per_minute": 1}


def test_half_used_window_delays_new_requests():
    clock = Clock()
    licence = _licence(clock)
    config = SandboxConfig(requests_per_minute=4, per_minute_delay=True)

    async def run() -> None:
        for _ in range(2):
            assert await licence.enter(config) is None
            licence.release_core()
        clock.now += 59.9  # 0.1 s left, 2 requests left: each waits 0.05 s
        assert await licence.enter(config) is None
        licence.release_core()

    asyncio.run(run())

    assert licence.snapshot()["delayed"] == 1


def test_requests_beyond_the_cores_wait_in_fifo_order():
    licence = _licence()
    config = SandboxConfig(max_concurrent=1)
    order: list[str] = []

    async def worker(name: str) -> None:
        assert await licence.enter(config) is None
        order.append(name)
        await asyncio.sleep(0)
        licence.release_core()

    async def run() -> None:
        assert await licence.enter(config) is None  # hold the only core
        tasks = [asyncio.create_task(worker(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0)
        assert licence.snapshot()["waiting"] == 3
        licence.release_core()
        await asyncio.gather(*tasks)

    asyncio.run(run())

    assert order == ["a", "b", "c"]
    snapshot = licence.snapshot()
    assert (snapshot["max_active"], snapshot["max_waiting"], snapshot["active"]) == (1, 3, 0)


def test_full_queue_declines_the_request():
    licence = _licence()
    config = SandboxConfig(max_concurrent=1, queue_size=1)

    async def run() -> str | None:
        assert await licence.enter(config) is None
        waiting = asyncio.create_task(licence.enter(config))
        await asyncio.sleep(0)
        declined = await licence.enter(config)
        licence.release_core()
        assert await waiting is None
        licence.release_core()
        return declined

    assert asyncio.run(run()) == "queue_full"
    assert licence.snapshot()["declined"] == {"queue_full": 1}


def test_wait_beyond_max_queue_wait_declines_the_request():
    licence = _licence()
    config = SandboxConfig(max_concurrent=1, max_queue_wait_seconds=0.01)

    async def run() -> str | None:
        assert await licence.enter(config) is None
        reason = await licence.enter(config)
        licence.release_core()
        return reason

    assert asyncio.run(run()) == "queue_timeout"
    assert licence.snapshot()["active"] == 0


def test_counters_track_sliding_and_calendar_minutes_and_in_flight():
    clock = Clock()
    licence = _licence(clock)
    for step in (0, 10, 30, 59, 61, 62):
        clock.now = 1000.0 + step
        licence.arrive()
    licence.leave()

    snapshot = licence.snapshot()

    assert snapshot["requests"] == 6
    assert snapshot["max_per_sliding_minute"] == 5  # 10, 30, 59, 61, 62 fall within one 60 s window
    assert sum(snapshot["per_calendar_minute"].values()) == 6
    assert (snapshot["in_flight"], snapshot["max_concurrent_observed"]) == (5, 6)


def test_gate_answers_declined_requests_with_plain_429_and_no_retry_after(api):
    api.backend.config.update({"requests_per_minute": 2, "per_minute_delay": False})
    api.backend.reset_counts()

    statuses = [api.get("Currency").status_code for _ in range(3)]
    declined = api.get("Currency")

    assert statuses == [200, 200, 429]
    assert declined.headers["content-type"].startswith("text/plain")
    assert "retry-after" not in declined.headers
    counts = api.client.get("/_sandbox/counts").json()
    assert counts["declined"] == {"per_minute": 2}
    assert counts["requests"] == 4
    assert counts["statuses"] == {"200": 2, "429": 2}


def test_gate_does_not_count_logout_or_the_control_plane(api):
    api.backend.reset_counts()

    api.client.get("/_sandbox/counts")
    api.client.post("/entity/auth/logout")

    assert api.client.get("/_sandbox/counts").json()["requests"] == 0


def test_counts_report_calls_by_entity_and_verb(api):
    api.backend.reset_counts()
    api.get("Currency")
    api.get("Currency/USD")
    api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"})

    calls = api.client.get("/_sandbox/counts").json()["calls"]

    assert calls == {"GET Currency": 1, "GET Currency/key": 1, "PUT Customer": 1}
