"""The transport: headers on every call, typed errors, 429/5xx handling, audit with redaction."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import httpx
import pytest

from shared.errors import ApiError, AuthFailed, NotFound, RateLimited, Rejected, Transient
from shared.exchange import audit_subject
from shared.zuora.transport import ZUORA_VERSION, dumps, loads
from shared.zuora.wire import (
    error_category,
    error_class,
    make_idempotency_key,
    make_track_id,
    parse_rate_limits,
    parse_reasons,
)

from .conftest import CLIENT_SECRET, RecordingThrottle

PERIOD = {"id": "p1", "name": "Dec'16", "status": "Open", "success": True}


def v1_error(code, message="nope", status=200):
    return httpx.Response(
        status,
        json={
            "success": False,
            "processId": "CBCFED6580B4E076",
            "reasons": [{"code": code, "message": message}],
        },
    )


# -- headers ---------------------------------------------------------------------------------------


def test_every_call_sends_version_track_id_and_gzip(make_client, router):
    route = router.get("/v1/accounting-periods/p1").mock(return_value=httpx.Response(200, json=PERIOD))
    make_client().periods.get("p1")

    sent = route.calls.last.request
    assert sent.headers["Zuora-Version"] == ZUORA_VERSION == "2025-08-12"
    assert sent.headers["Accept-Encoding"] == "gzip"
    assert "Idempotency-Key" not in sent.headers
    track = sent.headers["Zuora-Track-Id"]
    assert len(track) <= 64 and track.isascii()
    assert not set(track) & set(":;\"'")


def test_track_id_is_short_ascii_without_forbidden_characters():
    track = make_track_id("conn:with;odd\"chars'" + "x" * 80, "journal-runs.create", "abc123")
    assert len(track) == 64
    assert track.endswith("-abc123")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", track)


def test_track_id_differs_per_call_and_is_kept_across_retries(make_client, router):
    seen: list[str] = []
    responses = [httpx.Response(503), httpx.Response(200, json=PERIOD), httpx.Response(200, json=PERIOD)]

    def handle(request):
        seen.append(request.headers["Zuora-Track-Id"])
        return responses.pop(0)

    router.get("/v1/accounting-periods/p1").mock(side_effect=handle)
    client = make_client()
    client.periods.get("p1")
    client.periods.get("p1")

    assert seen[0] == seen[1]
    assert seen[2] != seen[1]


def test_idempotency_key_only_on_post_and_deterministic(make_client, router):
    post = router.post("/v1/journal-runs").mock(
        return_value=httpx.Response(200, json={"journalRunNumber": "JR-00000008", "success": True})
    )
    put = router.put("/v1/credit-memos/CM00000001").mock(
        return_value=httpx.Response(200, json={"success": True})
    )
    first, second = make_client(), make_client()

    first.journal_runs.create("Dec'16", "2016-12-31", ["Invoice Item"])
    second.journal_runs.create("Dec'16", "2016-12-31", ["Invoice Item"])
    first.journal_runs.create("Dec'16", "2016-12-31", ["Taxation Item"])
    first.transfers.credit_memo("CM00000001")

    keys = [c.request.headers["Idempotency-Key"] for c in post.calls]
    assert keys[0] == keys[1] != keys[2]
    assert re.fullmatch(r"lb-[0-9a-f]{64}", keys[0])
    assert "Idempotency-Key" not in put.calls.last.request.headers


def test_idempotency_key_from_explicit_parts(make_client, router, connection_name):
    post = router.post("/v1/journal-runs").mock(
        return_value=httpx.Response(200, json={"journalRunNumber": "JR-00000008", "success": True})
    )
    key = ("journal-run", "Dec'16", "Invoice Item")
    make_client().journal_runs.create("Dec'16", "2016-12-31", ["Invoice Item"], idempotency_key=key)

    assert post.calls.last.request.headers["Idempotency-Key"] == make_idempotency_key(connection_name, key)
    assert make_idempotency_key("other-tenant", key) != make_idempotency_key(connection_name, key)


def test_idempotency_key_is_refused_on_get(make_client):
    client = make_client()
    with pytest.raises(ValueError):
        client.transport.call("GET", "/v1/journal-runs/JR-1", operation="x", idempotency_key="k")


def test_idempotency_key_is_kept_across_retries_of_a_post(make_client, router, sleeps):
    seen: list[str] = []
    responses = [
        httpx.Response(
            409, json={"success": False, "reasons": [{"code": 50000050, "message": "in progress"}]}
        ),
        httpx.Response(200, json={"journalRunNumber": "JR-00000008", "success": True}),
    ]

    def handle(request):
        seen.append(request.headers["Idempotency-Key"])
        return responses.pop(0)

    router.post("/v1/journal-runs").mock(side_effect=handle)
    number = make_client().journal_runs.create("Dec'16", "2016-12-31", ["Invoice Item"])

    assert number == "JR-00000008"
    assert len(seen) == 2 and seen[0] == seen[1]
    assert sleeps == [0.5]


# -- JSON ------------------------------------------------------------------------------------------


def test_dumps_writes_decimals_as_exact_numbers():
    text = dumps(
        {"amount": Decimal("400.90"), "big": Decimal("12345678901234567890.01"), "n": [Decimal("1E+2")]}
    )
    assert text == '{"amount":400.90,"big":12345678901234567890.01,"n":[100]}'  # plain notation
    assert loads(text)["big"] == Decimal("12345678901234567890.01")


def test_dumps_rejects_non_finite_decimals():
    with pytest.raises(ValueError):
        dumps({"amount": Decimal("NaN")})


def test_loads_never_produces_floats():
    assert loads('{"a": 0.1, "b": 7300}') == {"a": Decimal("0.1"), "b": 7300}


# -- typed errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (90000011, AuthFailed),
        (53100320, Rejected),
        (50000021, Rejected),
        ("50000022", Rejected),
        (50000030, Rejected),
        (50000040, NotFound),
        (50000010, Rejected),
    ],
)
def test_success_false_on_200_is_a_typed_error(make_client, router, code, error):
    router.get("/v1/accounting-periods/p1").mock(return_value=v1_error(code, "'termType' value is bad"))

    with pytest.raises(error) as raised:
        make_client().periods.get("p1")

    assert type(raised.value) is error
    assert raised.value.status == 200
    assert raised.value.reasons[0].code == str(code)
    assert raised.value.reasons[0].message == "'termType' value is bad"
    assert raised.value.request_id == "CBCFED6580B4E076"


@pytest.mark.parametrize(("code", "attempts"), [(50000050, 4), (50000061, 4), (50000060, 4), (50000099, 4)])
def test_success_false_retryable_categories_are_retried_then_transient(
    make_client, router, sleeps, code, attempts
):
    route = router.get("/v1/accounting-periods/p1").mock(return_value=v1_error(code))

    with pytest.raises(Transient):
        make_client().periods.get("p1")

    assert route.call_count == attempts
    assert sleeps == [0.5, 1.0, 2.0]


def test_success_false_retryable_category_then_success(make_client, router, sleeps):
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=[v1_error(50000061), httpx.Response(200, json=PERIOD)]
    )

    assert make_client().periods.get("p1").name == "Dec'16"
    assert sleeps == [0.5]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"success": False, "reasons": [{"code": 53100320, "message": "bad"}]}, Rejected),
        (400, {"reasons": [{"code": 50000027, "message": "bad filter"}], "requestId": "r-1"}, Rejected),
        (403, {"code": 50000010, "message": "no permission"}, Rejected),
        (404, {"success": False, "reasons": [{"code": 50000040, "message": "not found"}]}, NotFound),
        (404, None, NotFound),
        (422, None, Rejected),
        (400, {"message": "Error - unrecognised fields"}, Rejected),
    ],
)
def test_final_http_errors_are_typed(make_client, router, status, body, error):
    response = httpx.Response(status, json=body) if body is not None else httpx.Response(status)
    route = router.get("/v1/accounting-periods/p1").mock(return_value=response)

    with pytest.raises(error) as raised:
        make_client().periods.get("p1")

    assert type(raised.value) is error
    assert raised.value.status == status
    assert route.call_count == 1


def test_object_query_error_keeps_request_id(make_client, router):
    router.get("/v1/accounting-periods/p1").mock(
        return_value=httpx.Response(
            400, json={"reasons": [{"code": 50000027, "message": "invalid filter"}], "requestId": "rq-9"}
        )
    )
    with pytest.raises(Rejected) as raised:
        make_client().periods.get("p1")
    assert raised.value.request_id == "rq-9"


@pytest.mark.parametrize(
    ("status", "category", "error"),
    [
        (401, None, AuthFailed),
        (200, 11, AuthFailed),
        (429, None, RateLimited),
        (200, 70, RateLimited),
        (404, None, NotFound),
        (400, 40, NotFound),
        (409, None, Transient),
        (409, 50, Transient),
        (500, None, Transient),
        (500, 60, Transient),
        (200, 61, Transient),
        (500, 99, Transient),
        (400, 20, Rejected),
        (400, 21, Rejected),
        (400, 22, Rejected),
        (400, 23, Rejected),
        (400, 27, Rejected),
        (400, 30, Rejected),
        (400, 90, Rejected),
        (403, 10, Rejected),
        (403, None, Rejected),
    ],
)
def test_error_class_table(status, category, error):
    assert error_class(status, category) is error


def test_parse_reasons_accepts_every_shape():
    assert [r.code for r in parse_reasons({"reasons": [{"code": 53100320, "message": "m"}]})] == ["53100320"]
    assert [(r.code, r.message) for r in parse_reasons({"code": 50000010, "message": "denied"})] == [
        ("50000010", "denied")
    ]
    assert [(r.code, r.message) for r in parse_reasons({"message": "Authentication error"})] == [
        ("", "Authentication error")
    ]
    assert error_category(parse_reasons({"reasons": [{"code": "70", "message": "rate"}]})) == 70
    assert error_category(parse_reasons({"reasons": [{"code": "INVALID_VALUE", "message": "x"}]})) is None


# -- 429, 5xx, timeouts ----------------------------------------------------------------------------


def test_429_with_retry_after_waits_then_succeeds(make_client, router, sleeps):
    throttle = RecordingThrottle()
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=[
            httpx.Response(
                429,
                headers={"Retry-After": "2", "Concurrency-Limit-Remaining": "0"},
                json={"success": False, "reasons": [{"code": 50000070, "message": "too many concurrent"}]},
            ),
            httpx.Response(200, json=PERIOD),
        ]
    )

    assert make_client(throttle=throttle).periods.get("p1").name == "Dec'16"
    assert sleeps == [2.0]
    assert 2.0 in throttle.pauses  # the whole fleet was held off too


def test_429_rate_limit_uses_ratelimit_reset(make_client, router, sleeps):
    throttle = RecordingThrottle()
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=[
            httpx.Response(
                429,
                headers={
                    "RateLimit-Limit": "2500, 2500;w=60",
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": "7",
                },
                json={"reasons": [{"code": 70, "message": "API Rate limit exceeded for the minute"}]},
            ),
            httpx.Response(200, json=PERIOD),
        ]
    )

    make_client(throttle=throttle).periods.get("p1")

    assert sleeps == [7.0]
    assert throttle.pauses == [7.0, 7.0]  # from the headers (quota spent) and from the 429 itself


def test_long_retry_after_raises_rate_limited_without_sleeping(make_client, router, sleeps):
    throttle = RecordingThrottle()
    route = router.get("/v1/accounting-periods/p1").mock(
        return_value=httpx.Response(
            429,
            headers={"Retry-After": "120"},
            json={"success": False, "reasons": [{"code": 50000070, "message": "concurrency"}]},
        )
    )

    with pytest.raises(RateLimited) as raised:
        make_client(throttle=throttle).periods.get("p1")

    assert raised.value.retry_after == 120.0
    assert raised.value.status == 429
    assert sleeps == []
    assert route.call_count == 1
    assert throttle.pauses == [120.0]


def test_429_pauses_the_redis_bucket_for_the_fleet(make_client, router, fake_redis, connection_name):
    router.get("/v1/accounting-periods/p1").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "120"}, json={"message": "too many"})
    )
    with pytest.raises(RateLimited):
        make_client().periods.get("p1")

    pause = float(fake_redis.get(f"ledgerbridge:{connection_name}:zuora:bucket:pause"))
    (sec, usec) = fake_redis.time()
    assert 110 < pause - (sec + usec / 1e6) <= 120


def test_fleet_pause_longer_than_inline_wait_raises_rate_limited(
    make_client, router, fake_redis, connection_name
):
    route = router.get("/v1/accounting-periods/p1").mock(return_value=httpx.Response(200, json=PERIOD))
    client = make_client()
    client.transport._throttle.pause(300)  # another process hit a 429

    with pytest.raises(RateLimited) as raised:
        client.periods.get("p1")

    assert raised.value.retry_after > 250
    assert route.call_count == 0


def test_5xx_backs_off_then_succeeds(make_client, router, sleeps):
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=[
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(503),
            httpx.Response(200, json=PERIOD),
        ]
    )
    assert make_client().periods.get("p1").name == "Dec'16"
    assert sleeps == [0.5, 1.0]


def test_5xx_exhausts_attempts_into_transient(make_client, router, sleeps):
    route = router.get("/v1/accounting-periods/p1").mock(return_value=httpx.Response(500))
    with pytest.raises(Transient) as raised:
        make_client().periods.get("p1")
    assert route.call_count == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert raised.value.status == 500


def test_timeout_is_retried_then_transient(make_client, router, sleeps):
    route = router.get("/v1/accounting-periods/p1").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(Transient) as raised:
        make_client().periods.get("p1")
    assert route.call_count == 4
    assert "timeout" in str(raised.value)
    assert isinstance(raised.value.__cause__, httpx.ReadTimeout)


def test_connect_error_then_success(make_client, router, sleeps):
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=PERIOD)]
    )
    assert make_client().periods.get("p1").id == "p1"
    assert sleeps == [0.5]


def test_2xx_body_that_is_not_json_is_transient(make_client, router):
    router.get("/v1/accounting-periods/p1").mock(return_value=httpx.Response(200, text="<html>portal</html>"))
    with pytest.raises(Transient):
        make_client().periods.get("p1")


# -- rate-limit headers ----------------------------------------------------------------------------


def test_rate_limit_headers_are_readable(make_client, router, clock):
    router.get("/v1/accounting-periods/p1").mock(
        return_value=httpx.Response(
            200,
            json=PERIOD,
            headers={
                "RateLimit-Limit": "2250000, 50000;w=60, 2250000;w=3600",
                "RateLimit-Remaining": "399",
                "RateLimit-Reset": "1200",
                "Concurrency-Limit-Type": "Default",
                "Concurrency-Limit-Limit": "40",
                "Concurrency-Limit-Remaining": "39",
            },
        )
    )
    client = make_client()
    assert client.rate_limits is None
    client.periods.get("p1")

    snap = client.rate_limits
    assert snap is not None
    assert (snap.limit, snap.remaining, snap.reset) == (2250000, 399, 1200.0)
    assert (snap.concurrency_type, snap.concurrency_limit, snap.concurrency_remaining) == ("Default", 40, 39)
    assert snap.observed_at == clock.now


def test_rate_limit_remaining_zero_pauses_the_fleet_until_reset(make_client, router):
    throttle = RecordingThrottle()
    router.get("/v1/accounting-periods/p1").mock(
        return_value=httpx.Response(
            200, json=PERIOD, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "45"}
        )
    )
    make_client(throttle=throttle).periods.get("p1")
    assert throttle.pauses == [45.0]


def test_parse_rate_limits_absent_headers():
    assert parse_rate_limits({}, at=1.0) is None


# -- audit -----------------------------------------------------------------------------------------


def test_audit_receives_every_exchange_redacted(make_client, router, audit):
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=[
            httpx.Response(401, json={"message": "Authentication error"}),
            httpx.Response(200, json=PERIOD),
        ]
    )
    router.routes["token"].mock(
        side_effect=[
            httpx.Response(200, json={"access_token": "tok-AAA", "expires_in": 3599, "jti": "tok-AAA-j"}),
            httpx.Response(200, json={"access_token": "tok-BBB", "expires_in": 3599, "jti": "tok-BBB-j"}),
        ]
    )
    with audit_subject("close:12"):
        make_client().periods.get("p1")

    assert [(e.method, e.url, e.status) for e in audit] == [
        ("POST", "https://rest.test.zuora.com/oauth/token", 200),
        ("GET", "https://rest.test.zuora.com/v1/accounting-periods/p1", 401),
        ("POST", "https://rest.test.zuora.com/oauth/token", 200),
        ("GET", "https://rest.test.zuora.com/v1/accounting-periods/p1", 200),
    ]
    assert {e.subject for e in audit} == {"close:12"}
    assert {e.attempt for e in audit} == {1}
    assert {e.api for e in audit} == {"zuora"}
    everything = json.dumps([e.__dict__ for e in audit], default=str)
    for secret in (CLIENT_SECRET, "tok-AAA", "tok-BBB"):
        assert secret not in everything
    assert audit[1].request_headers["authorization"] == "***"
    assert json.loads(audit[3].response_body)["name"] == "Dec'16"


def test_audit_numbers_attempts_and_records_network_errors(make_client, router, audit):
    router.get("/v1/accounting-periods/p1").mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json=PERIOD, headers={"Zuora-Request-Id": "rid-1"}),
        ]
    )
    make_client().periods.get("p1")

    api = [e for e in audit if "/v1/" in e.url]
    assert [(e.attempt, e.status) for e in api] == [(1, None), (2, 200)]
    assert api[0].error.startswith("timeout: ReadTimeout")
    assert api[1].request_id == "rid-1"
    assert api[1].duration_ms >= 0


def test_errors_carry_redacted_bodies(make_client, router):
    router.get("/v1/accounting-periods/p1").mock(
        return_value=httpx.Response(400, json={"success": False, "password": "pw", "reasons": []})
    )
    with pytest.raises(ApiError) as raised:
        make_client().periods.get("p1")
    assert "pw" not in (raised.value.body or "")
