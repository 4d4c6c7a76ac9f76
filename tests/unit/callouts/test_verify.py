"""Callout signature, timestamp window and body parsing (shared/callouts.py)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from shared.callouts import (
    CalloutRejected,
    check_timestamp,
    notification_id,
    parse_body,
    parse_timestamp,
    sign,
    verify_signature,
)

SECRET = "s3cret"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
BODY = b'{"eventCode":"1110","objectId":"8ad0abc","accountId":"8ad0def"}'


def test_signature_is_hex_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"s3cret", b"2026-03-02T04:00:00-08:00." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "2026-03-02T04:00:00-08:00", BODY) == expected


def test_good_signature_passes_in_either_hex_case():
    signature = sign(SECRET, "1767225600", BODY)
    verify_signature(SECRET, "1767225600", BODY, signature)
    verify_signature(SECRET, "1767225600", BODY, signature.upper())


GOOD = sign(SECRET, "1767225600", BODY)


@pytest.mark.parametrize(
    ("timestamp", "body", "signature"),
    [
        ("1767225600", BODY, "0" * 64),  # wrong
        ("1767225600", BODY, None),  # missing signature
        (None, BODY, GOOD),  # missing timestamp
        ("1767225601", BODY, GOOD),  # signed for another timestamp
        ("1767225600", BODY + b" ", GOOD),  # signed for another body
    ],
)
def test_bad_or_missing_signature_is_401(timestamp, body, signature):
    with pytest.raises(CalloutRejected) as info:
        verify_signature(SECRET, timestamp, body, signature)
    assert info.value.status == 401


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T04:00:00-08:00", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("2026-03-02T12:00:00Z", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("2026-03-02 12:00:00", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("1772452800", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("1772452800000", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
    ],
)
def test_timestamp_formats(text, expected):
    assert parse_timestamp(text) == expected


def test_a_retry_a_day_later_is_still_accepted():
    # Zuora retries up to 5 times, up to a day apart, with the same signed timestamp.
    check_timestamp("2026-02-27T12:00:00Z", NOW, max_age=timedelta(days=7))


@pytest.mark.parametrize("text", ["2026-02-20T12:00:00Z", "2026-03-04T12:00:00Z", "yesterday"])
def test_stale_future_or_unreadable_timestamp_is_401(text):
    with pytest.raises(CalloutRejected) as info:
        check_timestamp(text, NOW, max_age=timedelta(days=7))
    assert info.value.status == 401


def test_body_of_the_template_parses():
    parsed = parse_body(BODY)
    assert (parsed.event_code, parsed.object_type, parsed.object_id, parsed.account_id) == (
        "1110",
        "invoice",
        "8ad0abc",
        "8ad0def",
    )


@pytest.mark.parametrize(
    ("code", "object_type"),
    [
        ("1110", "invoice"),
        ("2120", "payment"),
        ("2410", "refund"),
        ("2430", "refund"),
        ("2710", "credit_memo"),
        ("2720", "credit_memo"),
        ("2820", "debit_memo"),
        (2120, "payment"),
    ],
)
def test_event_codes_map_to_objects(code, object_type):
    body = ('{"eventCode": %s, "objectId": "p1"}' % (f'"{code}"' if isinstance(code, str) else code)).encode()
    assert parse_body(body).object_type == object_type


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"objectId": "x"}',
        b'{"eventCode": "1111", "objectId": "x"}',
        b'{"eventCode": "1110"}',
        b'{"eventCode": "1110", "objectId": "../../etc"}',
        b'{"eventCode": "1110", "objectId": {"id": 1}}',
        b"\xff\xfe",
    ],
)
def test_malformed_body_or_unknown_event_is_400(body):
    with pytest.raises(CalloutRejected) as info:
        parse_body(body)
    assert info.value.status == 400


def test_notification_id_header_wins_and_falls_back_to_a_hash_of_the_delivery():
    assert notification_id({"Zuora-Notification-Id": "abc"}, "t", BODY) == "abc"
    assert notification_id({"zuora-notification-id": "abc"}, "t", BODY) == "abc"
    fallback = notification_id({}, "t", BODY)
    assert fallback.startswith("sha256:")
    assert fallback == notification_id({}, "t", BODY)
    assert fallback != notification_id({}, "u", BODY)
