"""The retry decision as a table: (what the attempt saw) -> (retry?, wait)."""

from __future__ import annotations

import pytest

from shared.zuora.retry import Decision, RetryPolicy, decide, header_seconds, rate_limit_wait

POLICY = RetryPolicy(max_attempts=4, base=0.5, cap=8.0, floor=0.05)


def ceiling(c: float) -> float:
    return c


def run(attempt=1, *, status=None, headers=None, error=None, category=None, method="GET", idempotent=True):
    return decide(
        attempt,
        status=status,
        headers=headers or {},
        error=error,
        body_success_false_category=category,
        method=method,
        idempotent=idempotent,
        policy=POLICY,
        jitter=ceiling,
    )


# (case, kwargs, expected retry, expected wait)
TABLE = [
    ("429 Retry-After", dict(status=429, headers={"Retry-After": "120"}), True, 120.0),
    (
        "429 RateLimit-Reset",
        dict(status=429, headers={"RateLimit-Reset": "42", "RateLimit-Remaining": "0"}),
        True,
        42.0,
    ),
    (
        "429 both: Retry-After wins",
        dict(status=429, headers={"Retry-After": "3", "RateLimit-Reset": "900"}),
        True,
        3.0,
    ),
    ("429 lowercase header", dict(status=429, headers={"ratelimit-reset": "7"}), True, 7.0),
    ("429 no headers: backoff", dict(status=429), True, 0.5),
    (
        "429 unkeyed POST still retried",
        dict(status=429, headers={"Retry-After": "2"}, method="POST", idempotent=False),
        True,
        2.0,
    ),
    (
        "200 success:false category 70",
        dict(status=200, category=70, headers={"RateLimit-Reset": "5"}),
        True,
        5.0,
    ),
    ("500", dict(status=500), True, 0.5),
    ("502", dict(status=502), True, 0.5),
    ("503", dict(status=503), True, 0.5),
    ("503 Retry-After", dict(status=503, headers={"Retry-After": "9"}), True, 9.0),
    ("504", dict(status=504), True, 0.5),
    ("500 attempt 3: doubled twice", dict(attempt=3, status=500), True, 2.0),
    ("timeout", dict(error="timeout"), True, 0.5),
    ("connect", dict(error="connect"), True, 0.5),
    ("read", dict(error="read"), True, 0.5),
    ("409 lock contention / key in flight", dict(status=409, category=50), True, 0.5),
    ("200 success:false category 50", dict(status=200, category=50), True, 0.5),
    ("200 success:false category 61", dict(status=200, category=61), True, 0.5),
    ("200 success:false category 60", dict(status=200, category=60), True, 0.5),
    ("200 success:false category 99", dict(status=200, category=99), True, 0.5),
    ("200 success:false category 20", dict(status=200, category=20), False, 0.0),
    ("200 success:false category 40", dict(status=200, category=40), False, 0.0),
    ("200 success:false category 11", dict(status=200, category=11), False, 0.0),
    ("400 category 30", dict(status=400, category=30), False, 0.0),
    ("400 no body", dict(status=400), False, 0.0),
    ("401 handled by auth", dict(status=401), False, 0.0),
    ("403", dict(status=403, category=10), False, 0.0),
    ("404", dict(status=404, category=40), False, 0.0),
    ("422 key reused elsewhere", dict(status=422), False, 0.0),
    ("501 not retried", dict(status=501), False, 0.0),
    ("unkeyed POST 503 not repeated", dict(status=503, method="POST", idempotent=False), False, 0.5),
    ("unkeyed POST timeout not repeated", dict(error="timeout", method="POST", idempotent=False), False, 0.5),
    (
        "unkeyed POST connect error repeated",
        dict(error="connect", method="POST", idempotent=False),
        True,
        0.5,
    ),
    ("keyed POST 503 repeated", dict(status=503, method="POST", idempotent=True), True, 0.5),
    ("last attempt 500 gives up", dict(attempt=4, status=500), False, 4.0),
    (
        "last attempt 429 gives up with the wait",
        dict(attempt=4, status=429, headers={"Retry-After": "30"}),
        False,
        30.0,
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "retry", "wait"), TABLE, ids=[row[0] for row in TABLE])
def test_decide_table(case, kwargs, retry, wait):
    decision = run(**kwargs)
    assert (decision.retry, decision.wait) == (retry, wait)
    assert decision.reason


def test_decide_backoff_is_capped_and_floored():
    assert run(attempt=3, status=500).wait == 2.0
    capped = decide(
        3,
        status=500,
        headers={},
        error=None,
        body_success_false_category=None,
        method="GET",
        idempotent=True,
        policy=RetryPolicy(max_attempts=9, base=5.0, cap=8.0),
        jitter=ceiling,
    )
    assert capped.wait == 8.0
    floored = decide(
        1,
        status=500,
        headers={},
        error=None,
        body_success_false_category=None,
        method="GET",
        idempotent=True,
        policy=RetryPolicy(floor=0.25),
        jitter=lambda c: 0.0,
    )
    assert floored == Decision(True, 0.25, "HTTP 500")


def test_decide_uses_the_jitter_given():
    decision = decide(
        2,
        status=502,
        headers={},
        error=None,
        body_success_false_category=None,
        method="GET",
        idempotent=True,
        policy=POLICY,
        jitter=lambda c: c / 4,
    )
    assert decision.wait == 0.25


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": " 5 "}, 5.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "-3"}, 0.0),
        ({}, None),
    ],
)
def test_header_seconds_parses_delta_seconds_only(headers, expected):
    assert header_seconds(headers, "Retry-After") == expected


def test_rate_limit_wait_prefers_retry_after_over_reset():
    assert rate_limit_wait({"RateLimit-Reset": "60"}) == 60.0
    assert rate_limit_wait({"RateLimit-Reset": "60", "Retry-After": "1"}) == 1.0
    assert rate_limit_wait({}) is None


def test_retry_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(cap=0.01, floor=0.1)
