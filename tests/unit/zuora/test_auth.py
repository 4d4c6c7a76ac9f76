"""OAuth: one fleet-wide token in Redis, refreshed inside the 300 s margin under a lock,
401 -> refresh once -> retry once."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs

import httpx
import pytest

from shared.errors import AuthFailed, RateLimited, Transient
from shared.zuora.auth import token_key

from .conftest import CLIENT_ID, CLIENT_SECRET, T0, token_response

PERIOD = {"id": "p1", "name": "Dec'16", "status": "Open", "success": True}


def period_route(router):
    return router.get("/v1/accounting-periods/p1", name="period").mock(
        return_value=httpx.Response(200, json=PERIOD)
    )


def bearer(request: httpx.Request) -> str:
    return request.headers["Authorization"]


def answering(*responses: httpx.Response, seen: list[str]):
    """A side effect answering ``responses`` in turn and recording each request's Authorization
    at the moment it was sent (the auth flow re-sends the same request object)."""
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(bearer(request))
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handle


def test_token_request_is_form_encoded_client_credentials_without_authorization(make_client, router):
    period_route(router)
    make_client().periods.get("p1")

    token_request = router.routes["token"].calls.last.request
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in token_request.headers
    assert parse_qs(token_request.content.decode()) == {
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "grant_type": ["client_credentials"],
    }
    assert bearer(router.routes["period"].calls.last.request) == "Bearer tok-1"


def test_token_request_sends_entity_id_when_configured(make_client, router, target):
    from dataclasses import replace

    period_route(router)
    make_client(target=replace(target, entity_id="1a2b7a37-3e7d-4cb3-b0e2-883de9e766cc")).periods.get("p1")

    token_request = router.routes["token"].calls.last.request
    assert token_request.headers["Zuora-Entity-Ids"] == "1a2b7a37-3e7d-4cb3-b0e2-883de9e766cc"
    assert router.routes["period"].calls.last.request.headers["Zuora-Entity-Ids"] == (
        "1a2b7a37-3e7d-4cb3-b0e2-883de9e766cc"
    )


def test_token_cached_in_redis_with_expiry_and_ttl(make_client, router, fake_redis, connection_name):
    period_route(router)
    make_client().periods.get("p1")

    key = token_key(connection_name)
    assert key == f"ledgerbridge:{connection_name}:zuora:token"
    assert json.loads(fake_redis.get(key)) == {
        "access_token": "tok-1",
        "expires_at": T0 + 3599,
        "refresh_at": T0 + 3599 - 300,
    }
    assert 3590 <= fake_redis.ttl(key) <= 3599


def test_token_fresh_is_reused_across_calls_and_clients(make_client, router, clock):
    period_route(router)
    first, second = make_client(), make_client()

    first.periods.get("p1")
    clock.now = T0 + 3599 - 301  # 301 s left: outside the 300 s margin
    first.periods.get("p1")
    second.periods.get("p1")

    assert router.routes["token"].call_count == 1
    assert (first.token_requests, second.token_requests) == (1, 0)


def test_token_refreshed_inside_the_margin(make_client, router, clock):
    period_route(router)
    router.routes["token"].mock(side_effect=[token_response("tok-1"), token_response("tok-2")])
    client = make_client()

    client.periods.get("p1")
    clock.now = T0 + 3599 - 299  # 299 s left: inside the margin
    client.periods.get("p1")

    assert client.token_requests == 2
    assert bearer(router.routes["period"].calls.last.request) == "Bearer tok-2"


def test_token_refresh_margin_is_configurable(make_client, router, clock):
    period_route(router)
    router.routes["token"].mock(side_effect=[token_response("tok-1"), token_response("tok-2")])
    client = make_client(refresh_margin=60.0)

    client.periods.get("p1")
    clock.now = T0 + 3599 - 100
    client.periods.get("p1")

    assert client.token_requests == 1


def test_short_lived_token_is_refreshed_at_half_life_not_every_call(make_client, router, clock):
    period_route(router)
    router.routes["token"].mock(side_effect=[token_response("tok-1", 60), token_response("tok-2", 60)])
    client = make_client()

    client.periods.get("p1")
    clock.now = T0 + 29
    client.periods.get("p1")
    assert client.token_requests == 1
    clock.now = T0 + 31
    client.periods.get("p1")
    assert client.token_requests == 2


def test_token_one_request_for_many_concurrent_callers(make_client, router, fake_redis):
    period_route(router)
    clients = [make_client() for _ in range(8)]
    # The token endpoint answers only once every caller has found the cache empty and gone for
    # the lock: the first fetch is held until all of them queue behind it (bounded wait).
    all_at_lock = threading.Event()
    at_lock = []
    real_lock = fake_redis.lock

    def counting_lock(*args, **kwargs):
        at_lock.append(1)
        if len(at_lock) == len(clients):
            all_at_lock.set()
        return real_lock(*args, **kwargs)

    def held_token(request):
        assert all_at_lock.wait(timeout=10), "callers never queued on the lock"
        return token_response("tok-fleet")

    fake_redis.lock = counting_lock
    router.routes["token"].mock(side_effect=held_token)
    start = threading.Barrier(len(clients))
    errors: list[BaseException] = []

    def work(client):
        try:
            start.wait(timeout=5)
            client.periods.get("p1")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    fake_redis.lock = real_lock

    assert errors == []
    assert not any(t.is_alive() for t in threads)
    assert len(at_lock) == len(clients)
    assert router.routes["token"].call_count == 1
    assert sum(c.token_requests for c in clients) == 1
    assert {bearer(call.request) for call in router.routes["period"].calls} == {"Bearer tok-fleet"}


def test_401_refreshes_once_and_retries_once(make_client, router):
    router.routes["token"].mock(side_effect=[token_response("tok-1"), token_response("tok-2")])
    seen: list[str] = []
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=answering(
            httpx.Response(401, json={"message": "Authentication error"}),
            httpx.Response(200, json={"id": "p1", "name": "Dec'16", "status": "Open", "success": True}),
            seen=seen,
        )
    )
    client = make_client()

    period = client.periods.get("p1")

    assert period.name == "Dec'16"
    assert client.token_requests == 2
    assert seen == ["Bearer tok-1", "Bearer tok-2"]


def test_second_401_is_auth_failed(make_client, router):
    router.routes["token"].mock(side_effect=[token_response("tok-1"), token_response("tok-2")])
    seen: list[str] = []
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=answering(httpx.Response(401, json={"message": "Authentication error"}), seen=seen)
    )
    client = make_client()

    with pytest.raises(AuthFailed) as raised:
        client.periods.get("p1")

    assert seen == ["Bearer tok-1", "Bearer tok-2"]
    assert client.token_requests == 2
    assert raised.value.status == 401
    assert "LEDGERBRIDGE_ZUORA_CLIENT_ID" in str(raised.value)


def test_401_does_not_discard_a_token_another_process_already_replaced(
    make_client, router, fake_redis, connection_name, clock
):
    # Our process holds tok-1 when it gets the 401; meanwhile another process stored tok-9.
    seen: list[str] = []
    ok = httpx.Response(200, json={"id": "p1", "name": "x", "status": "Open", "success": True})
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=answering(
            ok, httpx.Response(401, json={"message": "Authentication error"}), ok, seen=seen
        )
    )
    client = make_client()
    client.periods.get("p1")
    key = token_key(connection_name)

    real_get = fake_redis.get
    replaced = {"done": False}

    def get_then_replace(name):
        value = real_get(name)
        if name == key and not replaced["done"]:
            # The 401 arrives after we read tok-1; another process refreshes before our delete.
            replaced["done"] = True
            fake_redis.set(key, json.dumps({"access_token": "tok-9", "expires_at": T0 + 3599}))
        return value

    fake_redis.get = get_then_replace
    try:
        client.periods.get("p1")
    finally:
        fake_redis.get = real_get

    assert client.token_requests == 1
    assert seen == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-9"]
    assert json.loads(fake_redis.get(key))["access_token"] == "tok-9"


@pytest.mark.parametrize("status", [400, 401, 403])
def test_token_endpoint_refusal_is_auth_failed_naming_the_variables(make_client, router, status):
    router.routes["token"].mock(return_value=httpx.Response(status, json={"error": "invalid_client"}))
    api = period_route(router)

    with pytest.raises(AuthFailed) as raised:
        make_client().periods.get("p1")

    assert "LEDGERBRIDGE_ZUORA_CLIENT_ID" in str(raised.value)
    assert "LEDGERBRIDGE_ZUORA_CLIENT_SECRET" in str(raised.value)
    assert raised.value.status == status
    assert api.call_count == 0


def test_token_endpoint_429_is_rate_limited(make_client, router, sleeps):
    router.routes["token"].mock(
        return_value=httpx.Response(429, headers={"Retry-After": "60"}, json={"message": "Too many requests"})
    )
    period_route(router)

    with pytest.raises(RateLimited) as raised:
        make_client().periods.get("p1")

    assert raised.value.retry_after == 60.0
    assert sleeps == []


def test_token_endpoint_5xx_is_retried_then_transient(make_client, router, sleeps):
    router.routes["token"].mock(return_value=httpx.Response(503, text="upstream down"))
    period_route(router)

    with pytest.raises(Transient):
        make_client().periods.get("p1")

    assert router.routes["token"].call_count == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_token_endpoint_200_without_access_token_is_auth_failed(make_client, router):
    router.routes["token"].mock(return_value=httpx.Response(200, json={"token_type": "bearer"}))
    period_route(router)

    with pytest.raises(AuthFailed):
        make_client().periods.get("p1")


def test_the_process_uses_its_copy_of_the_token_without_reading_redis(
    make_client, router, fake_redis, connection_name, monkeypatch
):
    period_route(router)
    client = make_client()
    client.periods.get("p1")
    reads: list[str] = []
    real_get = fake_redis.get
    monkeypatch.setattr(fake_redis, "get", lambda key: reads.append(key) or real_get(key))

    client.periods.get("p1")
    client.periods.get("p1")

    assert reads == []
    assert router.routes["token"].call_count == 1
    assert [bearer(c.request) for c in router.routes["period"].calls] == ["Bearer tok-1"] * 3


def test_a_refused_copy_is_dropped_and_the_fleets_new_token_read_from_redis(
    make_client, router, fake_redis, connection_name
):
    seen: list[str] = []
    router.get("/v1/accounting-periods/p1", name="period").mock(
        side_effect=answering(
            httpx.Response(200, json=PERIOD),
            httpx.Response(401, json={"message": "Authentication error"}),
            httpx.Response(200, json=PERIOD),
            seen=seen,
        )
    )
    client = make_client()
    client.periods.get("p1")
    # Another process refreshed the token meanwhile; this one's copy is still tok-1.
    fleet = json.loads(fake_redis.get(token_key(connection_name)))
    fake_redis.set(token_key(connection_name), json.dumps(dict(fleet, access_token="tok-fleet")))

    client.periods.get("p1")

    assert seen == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-fleet"]
    assert router.routes["token"].call_count == 1


def _minute_window_429() -> httpx.Response:
    # Zuora's token endpoint: per-minute headers, no Retry-After (zuora-sdk create_token: 429).
    return httpx.Response(
        429, headers={"X-RateLimit-Limit-minute": "100", "X-RateLimit-Remaining-minute": "0"}
    )


def test_token_endpoint_429_waits_for_the_next_minute_window(make_client, router, sleeps):
    # T0 is 20 s into its minute: the window opens again in 40 s, longer than an inline wait.
    router.routes["token"].mock(return_value=_minute_window_429())
    period_route(router)

    with pytest.raises(RateLimited) as raised:
        make_client().periods.get("p1")

    assert raised.value.retry_after == 40.0
    assert sleeps == []


def test_token_endpoint_429_near_the_minute_end_sleeps_until_it_then_signs_in(
    make_client, router, sleeps, clock
):
    clock.now = T0 + 35  # 55 s into the minute: 5 s to the next window
    router.routes["token"].mock(side_effect=[_minute_window_429(), token_response("tok-1")])
    api = period_route(router)

    make_client().periods.get("p1")

    assert sleeps == [5.0]
    assert api.call_count == 1
