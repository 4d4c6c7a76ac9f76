"""Token flow of the Zuora sandbox (zuora-api.md section 1)."""

from __future__ import annotations

import pytest

from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ZuoraBackend, create_app

from .conftest import MODERN, ManualClock, TestClient, fetch_token

WWW = "Basic realm=Zuora API, ZSession realm=Zuora API, Bearer realm=Zuora API"


def _form(
    client_id: str = DEFAULT_CLIENT_ID, secret: str = DEFAULT_CLIENT_SECRET, grant: str = "client_credentials"
):
    return {"client_id": client_id, "client_secret": secret, "grant_type": grant}


def test_default_credentials_follow_zuora_length_rules():
    assert len(DEFAULT_CLIENT_ID) == 36
    assert len(DEFAULT_CLIENT_SECRET) <= 42


def test_token_with_configured_credentials_returns_bearer_token(client: TestClient):
    response = client.post("/oauth/token", data=_form())

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3599
    assert len(body["access_token"]) == 32
    assert body["jti"] != body["access_token"]
    assert "tenant." in body["scope"]
    assert response.headers["X-RateLimit-Limit-minute"] == "100"
    assert response.headers["X-RateLimit-Remaining-minute"] == "99"
    assert len(response.headers["Zuora-Request-Id"]) == 36


def test_token_with_wrong_secret_is_401(client: TestClient):
    response = client.post("/oauth/token", data=_form(secret="wrong"))

    assert response.status_code == 401
    assert response.json() == {
        "message": "invalid_client: Bad client credentials"
    }  # ProxyUnauthorizedResponse


def test_token_with_other_configured_credentials_only_accepts_those(clock: ManualClock):
    backend = ZuoraBackend(clock=clock)
    client_id = "11111111-2222-4333-8444-555555555555"
    with TestClient(create_app(backend, client_id=client_id, client_secret="s3cret")) as client:
        assert client.post("/oauth/token", data=_form()).status_code == 401
        assert client.post("/oauth/token", data=_form(client_id, "s3cret")).status_code == 200


@pytest.mark.vendor_contract_exempt  # a JSON body where the operation takes a form, on purpose
def test_token_with_json_body_is_rejected(client: TestClient):
    response = client.post("/oauth/token", json=_form())

    assert response.status_code == 400
    assert response.json()["message"].startswith("invalid_request: ")  # CommonErrorResponse


def test_token_with_authorization_header_is_rejected(client: TestClient):
    response = client.post("/oauth/token", data=_form(), headers={"Authorization": "Bearer x"})

    assert response.status_code == 400


def test_token_with_other_grant_type_is_rejected(client: TestClient):
    response = client.post("/oauth/token", data=_form(grant="password"))

    assert response.status_code == 400
    assert response.json() == {
        "code": 50000020,
        "message": "unsupported_grant_type: only client_credentials is supported",
    }


def test_token_secret_with_reserved_characters_needs_form_encoding(client: TestClient):
    # The default secret holds '+', '/' and '='; a raw, unencoded body turns '+' into a space.
    raw = f"client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&grant_type=client_credentials"
    response = client.post(
        "/oauth/token", content=raw, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert response.status_code == 401


def test_request_without_token_is_401_with_www_authenticate(client: TestClient):
    response = client.get("/object-query/accounts", headers={"Zuora-Version": MODERN})

    assert response.status_code == 401
    assert response.json() == {"message": "Authentication error"}
    assert response.headers["WWW-Authenticate"] == WWW
    assert "RateLimit-Remaining" in response.headers
    assert "Concurrency-Limit-Type" not in response.headers


def test_token_expires_after_its_lifetime(client: TestClient, clock: ManualClock):
    headers = {"Authorization": f"Bearer {fetch_token(client)}"}
    clock.advance(3598)
    assert client.get("/object-query/accounts", headers=headers).status_code == 200

    clock.advance(2)
    response = client.get("/object-query/accounts", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == WWW


def test_token_lifetime_is_configurable(client: TestClient, clock: ManualClock):
    client.post("/_sandbox/config", json={"token_lifetime_seconds": 5})
    token = client.post("/oauth/token", data=_form()).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    clock.advance(5)

    assert token["expires_in"] == 5
    assert client.get("/object-query/accounts", headers=headers).status_code == 401


def test_expire_tokens_control_invalidates_issued_tokens(client: TestClient):
    headers = {"Authorization": f"Bearer {fetch_token(client)}"}

    expired = client.post("/_sandbox/tokens/expire").json()

    assert expired == {"expired": 1}
    assert client.get("/object-query/accounts", headers=headers).status_code == 401


def test_token_endpoint_is_limited_per_ip_per_minute(client: TestClient):
    client.post("/_sandbox/config", json={"token_requests_per_minute_per_ip": 2})
    client.post("/oauth/token", data=_form())
    client.post("/oauth/token", data=_form())

    response = client.post("/oauth/token", data=_form())

    assert response.status_code == 429
    assert response.headers["X-RateLimit-Remaining-minute"] == "0"
    assert response.json()["reasons"][0]["code"] == 70
