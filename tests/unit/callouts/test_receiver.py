"""The callout receiver end to end in-process: worker/web.py over shared/callouts.py, a real SQLite
ledger, and an enqueue function that records what it was asked to send."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.callouts import CalloutBatcher, sign
from shared.settings import load_settings
from worker.web import CALLOUT_PATH, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SECRET = "callout-secret"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
STAMP = "2026-03-02T04:00:00-08:00"


class Enqueued(list):
    fail = False

    def __call__(self, connection, callout_id):
        if self.fail:
            raise ConnectionError("broker down")
        self.append((connection, callout_id))


@pytest.fixture
def enqueued():
    return Enqueued()


@pytest.fixture
def client(ledger, enqueued, connection_name):
    settings = load_settings(callout_hmac_secret=SECRET, connection=connection_name)
    app = create_app(settings=settings, ledger=ledger, enqueue=enqueued, clock=lambda: NOW)
    with TestClient(app) as test_client:
        yield test_client


def deliver(
    client,
    body: dict | bytes,
    *,
    notification="n-1",
    secret=SECRET,
    stamp=STAMP,
    headers=None,
    path=CALLOUT_PATH,
):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {
        "Content-Type": "application/json",
        "X-Zuora-Timestamp": stamp,
        "X-Zuora-Signature": sign(secret, stamp, raw),
        "Zuora-Notification-Id": notification,
        "Zuora-Request-Id": "0" * 32,
    }
    sent.update(headers or {})
    sent = {k: v for k, v in sent.items() if v is not None}
    return client.post(path, content=raw, headers=sent)


INVOICE = {"eventCode": "1110", "objectId": "8ad0aa11", "accountId": "8ad0bb22"}


def callout_rows(ledger):
    with ledger.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "select notification_id, event_code, object_type, object_id, state from callout_notification"
            )
        ).all()


def test_good_callout_is_recorded_and_enqueued(client, ledger, enqueued, connection_name):
    response = deliver(client, INVOICE)

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert callout_rows(ledger) == [("n-1", "1110", "invoice", "8ad0aa11", "enqueued")]
    assert [c for c, _ in enqueued] == [connection_name]


def test_duplicate_notification_gets_200_and_nothing_else(client, ledger, enqueued):
    deliver(client, INVOICE)
    again = deliver(client, INVOICE, headers={"Zuora-Request-Id": "1" * 32})

    assert again.status_code == 200
    assert again.json() == {"success": True, "duplicate": True}
    assert len(callout_rows(ledger)) == 1
    assert len(enqueued) == 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"secret": "another"}, 401),
        ({"headers": {"X-Zuora-Signature": None}}, 401),
        ({"headers": {"X-Zuora-Timestamp": None}}, 401),
        ({"stamp": "2026-02-01T00:00:00Z"}, 401),
        ({"body": b"{not json"}, 400),
        ({"body": {"eventCode": "9999", "objectId": "x"}}, 400),
        ({"body": {"eventCode": "1110"}}, 400),
    ],
)
def test_refused_callouts_record_and_enqueue_nothing(client, ledger, enqueued, change, status):
    body = change.pop("body", INVOICE)
    response = deliver(client, body, **change)

    assert response.status_code == status
    assert "error" in response.json()
    assert callout_rows(ledger) == []
    assert enqueued == []


def test_retry_a_day_later_is_accepted_once(client, ledger, enqueued):
    stamp = (NOW - timedelta(days=1)).isoformat()
    assert deliver(client, INVOICE, stamp=stamp).status_code == 200
    assert deliver(client, INVOICE, stamp=stamp).json()["duplicate"] is True
    assert len(enqueued) == 1


def test_enqueue_failure_still_answers_200_and_leaves_the_row_for_the_sweep(client, ledger, enqueued):
    enqueued.fail = True
    response = deliver(client, INVOICE)

    assert response.status_code == 200
    assert callout_rows(ledger) == [("n-1", "1110", "invoice", "8ad0aa11", "received")]


def test_ledger_that_cannot_be_written_answers_503(client, ledger, enqueued):
    ledger.engine.dispose()
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("drop table callout_notification"))

    response = deliver(client, INVOICE)

    assert response.status_code == 503
    assert enqueued == []


def test_receiver_without_a_secret_answers_503(ledger, enqueued):
    app = create_app(settings=load_settings(), ledger=ledger, enqueue=enqueued, clock=lambda: NOW)
    with TestClient(app) as client:
        assert deliver(client, INVOICE).status_code == 503
    assert enqueued == []


def test_healthz(client):
    assert client.get("/healthz").json() == {"ok": True}


KEY = "x" * 43 + "="  # a Fernet key (32 bytes, base64url)


def _store(ledger, name: str, *callout_secrets: str) -> None:
    from shared.connections import Connection, FileTarget, ZuoraTarget
    from shared.ledger.secrets import SecretBox

    stored = Connection(
        name=name,
        zuora=ZuoraTarget(base_url="https://rest.eu.zuora.com", client_id="id", client_secret="s"),
        erp_kind="file",
        file=FileTarget(export_dir=Path(f"/tmp/{name}")),
        callout_secrets=callout_secrets,
    )
    ledger.add_connection(stored, SecretBox([KEY]))


@pytest.fixture
def keyed_client(ledger, enqueued, connection_name):
    """A receiver that can read stored connections (it holds their secret key)."""
    settings = load_settings(callout_hmac_secret=SECRET, connection=connection_name, secret_key=KEY)
    app = create_app(settings=settings, ledger=ledger, enqueue=enqueued, clock=lambda: NOW)
    with TestClient(app) as test_client:
        yield test_client


def test_callout_for_a_stored_connection_is_checked_with_its_own_secret(keyed_client, ledger, enqueued):
    _store(ledger, "acme-eu", "acme-eu-secret")

    response = deliver(keyed_client, INVOICE, path=f"{CALLOUT_PATH}/acme-eu", secret="acme-eu-secret")

    assert response.status_code == 200
    assert [c for c, _ in enqueued] == ["acme-eu"]
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.text("select connection from callout_notification")).scalar_one() == "acme-eu"


def test_another_connections_secret_cannot_sign_for_a_stored_connection(keyed_client, ledger, enqueued):
    _store(ledger, "acme-eu", "acme-eu-secret")
    _store(ledger, "acme-us", "acme-us-secret")

    with_default = deliver(keyed_client, INVOICE, path=f"{CALLOUT_PATH}/acme-eu", secret=SECRET)
    with_neighbour = deliver(keyed_client, INVOICE, path=f"{CALLOUT_PATH}/acme-eu", secret="acme-us-secret")

    assert (with_default.status_code, with_neighbour.status_code) == (401, 401)
    assert callout_rows(ledger) == [] and enqueued == []


def test_a_stored_connection_without_a_callout_secret_takes_no_callouts(keyed_client, ledger, enqueued):
    _store(ledger, "acme-eu")

    response = deliver(keyed_client, INVOICE, path=f"{CALLOUT_PATH}/acme-eu")

    assert response.status_code == 503
    assert callout_rows(ledger) == [] and enqueued == []


def test_during_a_rotation_both_secrets_are_accepted(ledger, enqueued, connection_name):
    settings = load_settings(
        callout_hmac_secret="new-secret", callout_hmac_previous_secret=SECRET, connection=connection_name
    )
    app = create_app(settings=settings, ledger=ledger, enqueue=enqueued, clock=lambda: NOW)
    with TestClient(app) as rotating:
        old = deliver(rotating, INVOICE, notification="n-old", secret=SECRET)
        new = deliver(
            rotating, {**INVOICE, "objectId": "8ad0aa12"}, notification="n-new", secret="new-secret"
        )
        other = deliver(rotating, {**INVOICE, "objectId": "8ad0aa13"}, notification="n-x", secret="guess")

    assert (old.status_code, new.status_code, other.status_code) == (200, 200, 401)
    assert len(enqueued) == 2


def test_a_captured_delivery_replayed_under_a_fresh_id_is_a_duplicate(client, ledger, enqueued):
    first = deliver(client, INVOICE, notification="n-1")
    replayed = deliver(client, INVOICE, notification="n-999")  # same signed timestamp and body

    assert (first.status_code, replayed.status_code) == (200, 200)
    assert replayed.json() == {"success": True, "duplicate": True}
    assert len(callout_rows(ledger)) == 1 and len(enqueued) == 1


def test_a_body_over_the_limit_is_413_and_records_nothing(ledger, enqueued, connection_name):
    settings = load_settings(
        callout_hmac_secret=SECRET, connection=connection_name, callout_max_body_bytes=1024
    )
    app = create_app(settings=settings, ledger=ledger, enqueue=enqueued, clock=lambda: NOW)
    with TestClient(app) as small:
        big = {**INVOICE, "padding": "x" * 2000}
        response = deliver(small, big)

    assert response.status_code == 413
    assert callout_rows(ledger) == [] and enqueued == []


def test_callout_for_an_unknown_connection_is_404_and_records_nothing(client, ledger, enqueued):
    response = deliver(client, INVOICE, path=f"{CALLOUT_PATH}/nobody")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown connection 'nobody'"}
    assert callout_rows(ledger) == []
    assert enqueued == []


def test_without_an_enqueue_function_callouts_are_sent_in_batches(ledger, connection_name, monkeypatch):
    sent: list[tuple[str, list[int]]] = []
    monkeypatch.setattr("worker.web.celery_send", lambda connection, ids: sent.append((connection, ids)))

    class Patient(CalloutBatcher):
        def __init__(self, send, ledger, *, window, max_batch=50):
            assert window == 0.5  # from the settings
            super().__init__(send, ledger, window=3600, max_batch=max_batch)  # leaves at shutdown

    monkeypatch.setattr("shared.callouts.CalloutBatcher", Patient)
    settings = load_settings(
        callout_hmac_secret=SECRET, connection=connection_name, callout_batch_seconds=0.5
    )
    app = create_app(settings=settings, ledger=ledger, clock=lambda: NOW)
    with TestClient(app) as test_client:
        for n in range(3):
            body = {**INVOICE, "objectId": f"8ad0aa1{n}"}
            assert deliver(test_client, body, notification=f"n-{n}").status_code == 200
        assert sent == []

    assert sent == [(connection_name, [1, 2, 3])]
    assert [row.state for row in [*callout_rows(ledger)]] == ["enqueued"] * 3
