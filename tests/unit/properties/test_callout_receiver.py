"""Bad input on purpose: the callout receiver (worker/web.py over shared/callouts.py), in-process
through Starlette's TestClient on a real SQLite ledger.

Whatever the body, headers, signature, timestamp or path, the answer is a 200 for one of our
callouts or a 4xx whose ``error`` says what is wrong - never a 500 - and a refused delivery
changes no row of any ledger table and enqueues nothing.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.callouts import EVENTS, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger
from shared.settings import load_settings
from worker.web import CALLOUT_PATH, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SECRET = "callout-secret-for-properties"
CONNECTION = "acme"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=7)
BODY_LIMIT = 16 * 1024
INVOICE = {"eventCode": "1110", "objectId": "8ad0aa11", "accountId": "8ad0bb22"}

# Deterministic runs (the same examples every time), no example database written into the tree;
# the ledger is real SQLite, so no deadline.
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Receiver:
    client: TestClient
    ledger: Ledger
    enqueued: list[tuple[str, int]] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=itertools.count)

    def row_counts(self) -> dict[str, int]:
        """Rows per ledger table: a refused delivery must leave every one as it was."""
        with self.ledger.engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {
                name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
                for name in names
            }

    def post(self, body: bytes, headers: dict[str, bytes | str], path: str = CALLOUT_PATH) -> Any:
        sent: dict[str, bytes | str] = {
            "Content-Type": "application/json",
            "Zuora-Notification-Id": f"n-{next(self.ids)}",  # fresh: a refusal is never a duplicate
        }
        sent.update(headers)
        return self.client.post(path, content=body, headers=sent)

    def deliver(self, body: bytes, *, stamp: str = "2026-03-02T12:00:00Z") -> Any:
        """``body`` with a good timestamp and the right signature."""
        return self.post(body, {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(SECRET, stamp, body)})


@contextmanager
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    ledger = Ledger.from_url(url)
    settings_ = load_settings(
        callout_hmac_secret=SECRET, connection=CONNECTION, callout_max_body_bytes=BODY_LIMIT
    )
    enqueued: list[tuple[str, int]] = []
    app = create_app(
        settings=settings_,
        ledger=ledger,
        enqueue=lambda connection, callout_id: enqueued.append((connection, callout_id)),
        clock=lambda: NOW,
    )
    try:
        # A 500 comes back as a response here instead of an exception, so the test sees it as
        # Zuora would.
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Receiver(client, ledger, enqueued)
    finally:
        ledger.dispose()


def assert_refused(found: Receiver, response: Any, before: dict[str, int], enqueued: int) -> str:
    """A 4xx with a JSON ``error`` that names something, and no trace of the delivery."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert isinstance(error, str) and error.strip()
    assert found.row_counts() == before
    assert len(found.enqueued) == enqueued
    return error


# -- strategies -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ids = st.one_of(
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.text(max_size=80),
    st.integers(),
    json_values,
)
codes = st.one_of(st.sampled_from(sorted(EVENTS)), st.integers(0, 9999), st.text(max_size=8), json_values)
templates = st.fixed_dictionaries(
    {},
    optional={"eventCode": codes, "objectId": ids, "accountId": ids, "padding": st.text(max_size=30)},
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Our template with fields missing, mistyped, unicode or extra; any JSON; any bytes; JSON
    nested deeper than a decoder recurses; the template in another encoding."""
    kind = draw(st.sampled_from(["template", "json", "bytes", "nested", "encoded"]))
    if kind == "template":
        doc = draw(templates)
        return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "nested":
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        depth = draw(st.integers(1, 50) | st.integers(500, BODY_LIMIT // (len(opener) + 1)))
        return opener * depth + b"1" + closer * depth
    doc = draw(templates)
    return json.dumps(doc, ensure_ascii=False).encode(
        draw(st.sampled_from(["utf-16", "utf-32", "latin-1"])), "replace"
    )


# Header values as a client can send them: any byte but CR, LF and NUL.
header_text = st.text(
    st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\r\n"), max_size=60
)


@st.composite
def stamps(draw: st.DrawFn) -> tuple[str | None, bool]:
    """A timestamp header and whether it lies within the accepted window."""
    kind = draw(st.sampled_from(["missing", "text", "number", "fresh", "any-datetime"]))
    if kind == "missing":
        return None, False
    if kind == "text":
        return draw(header_text | st.sampled_from(["nan", "inf", "-inf", "1e400", "1_0", " ", "Z"])), False
    if kind == "number":
        number = draw(st.integers(-(10**20), 10**20) | st.floats(allow_nan=True, allow_infinity=True))
        return str(number), False
    if kind == "fresh":
        at = NOW - draw(st.timedeltas(min_value=timedelta(0), max_value=MAX_AGE - timedelta(seconds=1)))
        offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
        return at.astimezone(offset).isoformat(), True
    at = draw(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-23, minutes=-59))])))
    return at.isoformat(), False


# -- properties -----------------------------------------------------------------------------------


def test_any_signed_body_is_recorded_or_refused_with_a_clear_400(tmp_path):
    with receiver(tmp_path) as found:

        @PROPERTY
        @given(body=bodies())
        @example(body=b"[" * 5000 + b"]" * 5000)  # was a RecursionError in the decoder: a 500
        def check(body: bytes) -> None:
            before, enqueued = found.row_counts(), len(found.enqueued)

            response = found.deliver(body)

            if response.status_code == 200:
                # Only one of our callouts gets here: it is recorded once and handed on.
                doc = json.loads(body)
                assert str(doc["eventCode"]).strip() in EVENTS
                assert found.row_counts()["callout_notification"] == before["callout_notification"] + 1
                assert len(found.enqueued) == enqueued + 1
            else:
                assert response.status_code == 400
                error = assert_refused(found, response, before, enqueued)
                assert any(word in error for word in ("body", "eventCode", "objectId", "accountId"))

        check()


def test_any_signature_and_timestamp_is_accepted_only_when_both_are_right(tmp_path):
    body = json.dumps(INVOICE).encode()
    with receiver(tmp_path) as found:

        @PROPERTY
        @given(
            stamp=stamps(),
            signature=st.sampled_from(["missing", "text", "other-secret", "right", "right-upper"]),
            noise=header_text,
        )
        def check(stamp: tuple[str | None, bool], signature: str, noise: str) -> None:
            value, fresh = stamp
            headers: dict[str, bytes | str] = {}
            if value is not None:
                raw = value.encode("latin-1", "replace")
                headers[TIMESTAMP_HEADER] = raw
                value = raw.decode("latin-1")  # what the receiver reads and signs
            if signature == "text":
                headers[SIGNATURE_HEADER] = noise.encode("latin-1")
            elif signature != "missing":
                secret = "another-connection-secret" if signature == "other-secret" else SECRET
                given_signature = sign(secret, value or "", body)
                headers[SIGNATURE_HEADER] = (
                    given_signature.upper() if signature == "right-upper" else given_signature
                )
            before, enqueued = found.row_counts(), len(found.enqueued)

            response = found.post(body, headers)

            right = signature in ("right", "right-upper") and value is not None
            if right and fresh:
                assert response.status_code == 200, response.text
            elif response.status_code != 200:
                # A stale or unreadable timestamp is refused even when signed (Zuora signs ours).
                error = assert_refused(found, response, before, enqueued)
                assert response.status_code == 401
                assert "signature" in error or TIMESTAMP_HEADER in error
            else:
                # Accepted: the signature was right and the timestamp readable and in the window.
                assert right

        check()


def test_a_body_over_the_limit_is_413_whatever_it_holds(tmp_path):
    with receiver(tmp_path) as found:

        @PROPERTY
        @given(extra=st.integers(1, 3 * BODY_LIMIT), filler=st.sampled_from([b" ", b"x", b"\xff", b"["]))
        def check(extra: int, filler: bytes) -> None:
            body = json.dumps(INVOICE).encode()
            body += filler * (BODY_LIMIT - len(body) + extra)
            before, enqueued = found.row_counts(), len(found.enqueued)

            response = found.deliver(body)

            assert response.status_code == 413
            assert str(BODY_LIMIT) in assert_refused(found, response, before, enqueued)

        check()


def test_a_callout_for_an_unknown_connection_is_404_and_records_nothing(tmp_path):
    body = json.dumps(INVOICE).encode()
    with receiver(tmp_path) as found:

        @PROPERTY
        @given(name=st.text(min_size=1, max_size=40).filter(lambda n: n not in (".", "..", CONNECTION)))
        def check(name: str) -> None:
            stamp = "2026-03-02T12:00:00Z"
            headers: dict[str, bytes | str] = {
                TIMESTAMP_HEADER: stamp,
                SIGNATURE_HEADER: sign(SECRET, stamp, body),
            }
            before, enqueued = found.row_counts(), len(found.enqueued)

            response = found.post(body, headers, path=f"{CALLOUT_PATH}/{quote(name, safe='')}")

            assert response.status_code == 404, response.text
            assert found.row_counts() == before and len(found.enqueued) == enqueued
            if "/" not in name:  # a name with a slash is another path, not a connection name
                assert response.json() == {"error": f"unknown connection {name!r}"}

        check()
