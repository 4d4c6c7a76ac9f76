"""The rotating OAuth refresh token: kept durably as well as in Redis, written durably first, read
back when Redis has lost it; sealed with every key of LEDGERBRIDGE_SECRET_KEY.

The in-process fake (conftest.py) rotates refresh tokens as Acumatica does: each refresh issues a
new one and the one it was given stops working. Its tokens are numbered in issue order: the first
grant answers ``at0``/``rt1``, the second ``at2``/``rt3``, and so on.
"""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, MultiFernet

from shared.erp.acumatica_session import refresh_token_key, session_key
from shared.errors import AuthFailed, Transient

from .conftest import DurableCopy, json_response, make_target

CUSTOMER = {"id": "0b0f", "rowNumber": 1, "CustomerID": {"value": "C1"}}


def refresh_only(token: str = "rt-configured"):
    """A deployment that signs in with a refresh token alone (no username or password)."""
    return make_target(
        client_id="6b2e@Company", client_secret="s3cret", refresh_token=token, username=None, password=None
    )


def refresh_grants(fake) -> list[str]:
    return [g["refresh_token"] for g in fake.token_grants if g["grant_type"] == "refresh_token"]


@pytest.fixture
def customer(fake):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))


def test_a_new_refresh_token_is_stored_durably_before_redis_and_before_its_access_token_is_used(
    fake, make_client, fake_redis, connection_name, customer
):
    fake.refresh_tokens.add("rt-configured")
    seen_at_save: list[tuple[str, object, object, int]] = []

    class Recording(DurableCopy):
        def save(self, token: str) -> None:
            seen_at_save.append(
                (
                    token,
                    fake_redis.get(refresh_token_key(connection_name)),
                    fake_redis.get(session_key(connection_name)),
                    len(fake.data_requests()),
                )
            )
            super().save(token)

    make_client(target=refresh_only(), refresh_tokens=Recording()).get_record("Customer", "C1")

    assert seen_at_save == [("rt1", None, None, 0)]
    assert fake_redis.get(refresh_token_key(connection_name)) == b"rt1"
    assert [r.headers["authorization"] for r in fake.data_requests()] == ["Bearer at0"]


def test_after_redis_is_flushed_the_next_sign_in_uses_the_durable_token_not_the_spent_configured_one(
    fake, make_client, fake_redis, customer
):
    fake.refresh_tokens.add("rt-configured")
    durable = DurableCopy()
    worker = make_client(target=refresh_only(), refresh_tokens=durable)
    worker.get_record("Customer", "C1")
    fake.expire_sessions()
    worker.get_record("Customer", "C1")  # the access token expired: rt1 is spent for rt3

    fake_redis.flushall()  # a Redis restart: the session and the newest refresh token are gone
    restarted = make_client(target=refresh_only(), refresh_tokens=durable)
    restarted.get_record("Customer", "C1")

    assert refresh_grants(fake) == ["rt-configured", "rt1", "rt3"]
    assert durable.saved == ["rt1", "rt3", "rt5"]
    assert [r.headers["authorization"] for r in fake.data_requests()][-1] == "Bearer at4"


def test_a_refused_redis_copy_is_followed_by_the_durable_copy(
    fake, make_client, fake_redis, connection_name, customer
):
    # Another process rotated the token and stored the successor durably; Redis has the old one.
    fake_redis.set(refresh_token_key(connection_name), "rt-spent")
    fake.refresh_tokens.add("rt-live")

    make_client(target=refresh_only(), refresh_tokens=DurableCopy(["rt-live"])).get_record("Customer", "C1")

    assert refresh_grants(fake) == ["rt-spent", "rt-live"]
    assert fake_redis.get(refresh_token_key(connection_name)) == b"rt1"


def test_a_refused_stored_token_is_followed_by_a_newly_configured_one(fake, make_client, customer):
    # An engineer issued a new refresh token and configured it after the stored chain broke.
    fake.refresh_tokens.add("rt-issued")
    durable = DurableCopy(["rt-spent"])

    make_client(target=refresh_only("rt-issued"), refresh_tokens=durable).get_record("Customer", "C1")

    assert refresh_grants(fake) == ["rt-spent", "rt-issued"]
    assert durable.saved == ["rt-spent", "rt1"]


def test_every_refresh_token_refused_without_a_username_raises_auth_failed_naming_the_variable(
    fake, make_client, fake_redis, connection_name
):
    fake_redis.set(refresh_token_key(connection_name), "rt-spent-1")

    client = make_client(target=refresh_only("rt-spent-3"), refresh_tokens=DurableCopy(["rt-spent-2"]))

    with pytest.raises(AuthFailed) as info:
        client.get_record("Customer", "C1")

    assert refresh_grants(fake) == ["rt-spent-1", "rt-spent-2", "rt-spent-3"]
    assert "LEDGERBRIDGE_ACUMATICA_REFRESH_TOKEN" in str(info.value)
    assert fake.data_requests() == []


def test_a_durable_write_that_fails_keeps_the_token_in_redis_and_uses_nothing_until_it_is_stored(
    fake, make_client, fake_redis, connection_name, customer
):
    fake.refresh_tokens.add("rt-configured")

    class LedgerDown(DurableCopy):
        down = True

        def save(self, token: str) -> None:
            if self.down:
                raise OSError("the ledger is not answering")
            super().save(token)

    durable = LedgerDown()
    client = make_client(target=refresh_only(), refresh_tokens=durable)

    with pytest.raises(Transient, match="could not be stored durably"):
        client.get_record("Customer", "C1")
    assert fake_redis.get(refresh_token_key(connection_name)) == b"rt1"  # its only copy
    assert fake_redis.get(session_key(connection_name)) is None
    assert fake.data_requests() == []

    durable.down = False
    client.get_record("Customer", "C1")

    assert refresh_grants(fake) == ["rt-configured", "rt1"]
    assert durable.saved == ["rt3"]


def test_redis_values_sealed_with_the_old_key_are_read_after_a_new_key_is_put_first(
    fake, make_client, fake_redis, connection_name, customer
):
    old, new = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
    target = make_target(client_id="6b2e@Company", client_secret="s3cret")
    make_client(target=target, cipher=MultiFernet([old])).get_record("Customer", "C1")
    rotated = make_client(target=target, cipher=MultiFernet([new, old]))

    rotated.get_record("Customer", "C1")  # the bearer session sealed with the old key
    fake_redis.delete(session_key(connection_name))
    rotated.get_record("Customer", "C1")  # the refresh token sealed with the old key

    assert [g["grant_type"] for g in fake.token_grants] == ["password", "refresh_token"]
    assert refresh_grants(fake) == ["rt1"]
    assert new.decrypt(fake_redis.get(refresh_token_key(connection_name))) == b"rt3"
    assert b"at2" in new.decrypt(fake_redis.get(session_key(connection_name)))
