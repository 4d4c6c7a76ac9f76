"""Sign-in, sessions and OAuth tokens (acumatica-api.md section 2)."""

from __future__ import annotations

import warnings

import pytest

from sandbox.acumatica import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, create_app

from .conftest import BASE, CREDENTIALS, make_backend

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_login_valid_credentials_sets_session_cookies(anonymous):
    response = anonymous.post("/entity/auth/login", json=CREDENTIALS)

    assert response.status_code == 204
    assert response.content == b""
    assert {".ASPXAUTH", "ASP.NET_SessionId"} <= set(response.cookies.keys())


def test_login_company_key_and_form_encoding_are_accepted(anonymous):
    by_company = anonymous.post(
        "/entity/auth/login", json={"name": "admin", "password": "sandbox", "company": "Company"}
    )
    by_form = TestClient(anonymous.app).post(
        "/entity/auth/login", data={"name": "admin", "password": "sandbox", "tenant": "Company"}
    )

    assert (by_company.status_code, by_form.status_code) == (204, 204)


def test_login_without_tenant_signs_in_to_the_default_tenant(anonymous):
    response = anonymous.post("/entity/auth/login", json={"name": "admin", "password": "sandbox"})

    assert response.status_code == 204


def test_login_wrong_password_is_an_invalid_credentials_error(anonymous, backend):
    response = anonymous.post("/entity/auth/login", json={**CREDENTIALS, "password": "nope"})

    assert response.status_code == 500
    assert response.json()["exceptionMessage"] == "Invalid credentials. Please try again."
    assert backend.counts()["open_sessions"] == 0


def test_login_unknown_tenant_is_an_undefined_company_error(anonymous):
    response = anonymous.post("/entity/auth/login", json={**CREDENTIALS, "tenant": "Other"})

    assert response.status_code == 500
    assert response.json()["exceptionType"] == "PX.Data.PXUndefinedCompanyException"


def test_login_beyond_session_cap_is_429_api_login_limit(anonymous, backend):
    app = anonymous.app
    first = TestClient(app).post("/entity/auth/login", json=CREDENTIALS)
    second = TestClient(app).post("/entity/auth/login", json=CREDENTIALS)

    third = TestClient(app).post("/entity/auth/login", json=CREDENTIALS)

    assert (first.status_code, second.status_code, third.status_code) == (204, 204, 429)
    assert "API Login Limit" in third.text
    assert "retry-after" not in third.headers
    assert backend.counts()["login_limit_429"] == 1


def test_logout_frees_a_session_for_the_next_login(anonymous, backend):
    backend.config.update({"max_sessions": 1})
    holder = TestClient(anonymous.app)
    holder.post("/entity/auth/login", json=CREDENTIALS)

    logout = holder.post("/entity/auth/logout")
    login = TestClient(anonymous.app).post("/entity/auth/login", json=CREDENTIALS)

    assert (logout.status_code, login.status_code) == (204, 204)
    assert backend.counts()["logouts"] == 1


def test_data_call_without_session_is_401(anonymous):
    response = anonymous.get(f"{BASE}/Customer")

    assert response.status_code == 401
    assert response.json() == {"message": "You are not signed in to the system."}


def test_data_call_after_logout_is_401(api):
    api.client.post("/entity/auth/logout")

    assert api.get("Customer").status_code == 401


def test_session_idle_past_timeout_is_401_and_frees_the_slot(api, clock):
    assert api.get("Customer").status_code == 200
    clock.now += 601

    response = api.get("Customer")

    assert response.status_code == 401
    assert api.backend.counts()["open_sessions"] == 0


def test_session_used_within_timeout_stays_alive(api, clock):
    for _ in range(3):
        clock.now += 500
        assert api.get("Customer").status_code == 200


def test_session_idle_timeout_is_configurable(api, clock):
    api.backend.config.update({"session_idle_seconds": 5})
    clock.now += 6

    assert api.get("Customer").status_code == 401


def test_expire_sessions_knob_ends_every_session(api):
    expired = api.client.post("/_sandbox/sessions/expire").json()

    assert expired == {"expired": 1}
    assert api.get("Customer").status_code == 401


def _token(client, **form):
    data = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET, **form}
    return client.post("/identity/connect/token", data=data)


def test_oauth_password_grant_issues_bearer_token_with_refresh():
    client = TestClient(create_app(make_backend()))

    response = _token(
        client, grant_type="password", username="admin", password="sandbox", scope="api offline_access"
    )

    body = response.json()
    assert response.status_code == 200
    assert (body["expires_in"], body["token_type"], body["scope"]) == (3600, "Bearer", "api offline_access")
    assert body["refresh_token"]
    data = client.get(f"{BASE}/Currency", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert data.status_code == 200


def test_oauth_without_offline_access_issues_no_refresh_token():
    client = TestClient(create_app(make_backend()))

    body = _token(client, grant_type="password", username="admin", password="sandbox", scope="api").json()

    assert "refresh_token" not in body


def test_oauth_wrong_password_is_invalid_grant():
    client = TestClient(create_app(make_backend()))

    response = _token(client, grant_type="password", username="admin", password="x", scope="api")

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "invalid_username_or_password"}


# Sends a grant Acumatica does not document on purpose, to test the sandbox's own error handling.
@pytest.mark.vendor_contract_exempt
def test_oauth_client_credentials_grant_is_unsupported():
    client = TestClient(create_app(make_backend()))

    response = _token(client, grant_type="client_credentials", scope="api")

    assert response.status_code == 400
    assert response.json() == {"error": "unsupported_grant_type"}


def test_oauth_wrong_client_secret_is_invalid_client():
    client = TestClient(create_app(make_backend()))

    response = client.post(
        "/identity/connect/token",
        data={
            "grant_type": "password",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": "x",
            "username": "admin",
            "password": "sandbox",
        },
    )

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_client"}


def test_oauth_expired_access_token_is_401_and_refresh_rotates_the_refresh_token(clock):
    client = TestClient(create_app(make_backend(clock)))
    first = _token(
        client, grant_type="password", username="admin", password="sandbox", scope="api offline_access"
    ).json()
    clock.now += 3601

    expired = client.get(f"{BASE}/Currency", headers={"Authorization": f"Bearer {first['access_token']}"})
    refreshed = _token(client, grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    reused = _token(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
    again = client.get(f"{BASE}/Currency", headers={"Authorization": f"Bearer {refreshed['access_token']}"})

    assert expired.status_code == 401
    assert refreshed["refresh_token"] != first["refresh_token"]
    assert reused.status_code == 400
    assert again.status_code == 200


def test_oauth_grants_count_against_the_session_cap(anonymous):
    _token(anonymous, grant_type="password", username="admin", password="sandbox", scope="api")
    _token(anonymous, grant_type="password", username="admin", password="sandbox", scope="api")

    login = anonymous.post("/entity/auth/login", json=CREDENTIALS)

    assert login.status_code == 429
