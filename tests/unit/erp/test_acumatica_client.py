"""AcumaticaClient against an in-process fake: sessions, limits, retries, errors, audit.

The fake (conftest.py) follows acumatica-api.md; it is the system edge, so it is the only mock.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import httpx
import pytest
from cryptography.fernet import Fernet, MultiFernet

from shared.erp.acumatica_session import parse_set_cookies, session_key
from shared.erp.errors import EndpointNotFound, OutcomeUnknown
from shared.errors import AuthFailed, NotFound, RateLimited, Rejected, Transient
from shared.exchange import REDACTED, Exchange, audit_subject

from .conftest import BASE, SITE, DurableCopy, body_of, http_error, json_response, make_target

CUSTOMER = {"id": "0b0f", "rowNumber": 1, "CustomerID": {"value": "C1"}, "Status": {"value": "Active"}}


# -- sessions -------------------------------------------------------------------------------------


def test_session_shared_by_two_clients_logs_in_once(fake, make_client, fake_redis, connection_name):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    first, second = make_client(), make_client()

    assert first.get_record("Customer", "C1") == {
        "id": "0b0f",
        "rowNumber": 1,
        "CustomerID": "C1",
        "Status": "Active",
    }
    assert second.get_record("Customer", "C1")["CustomerID"] == "C1"

    assert fake.logins == 1
    cookies = [r.headers["cookie"] for r in fake.data_requests()]
    assert cookies == [".ASPXAUTH=auth0; ASP.NET_SessionId=sauth0; UserBranch=1"] * 2
    assert fake_redis.ttl(session_key(connection_name)) > 0


def test_login_is_single_flight_across_concurrent_workers(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    clients = [make_client() for _ in range(4)]
    barrier = threading.Barrier(len(clients))
    original_login = fake._login

    def slow_login(request):
        time.sleep(0.05)  # long enough for every worker to find no session and queue on the lock
        return original_login(request)

    fake._login = slow_login
    errors: list[BaseException] = []

    def work(client):
        barrier.wait(timeout=5)
        try:
            client.get_record("Customer", "C1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert fake.logins == 1
    assert len(fake.data_requests()) == 4


def test_login_sends_credentials_tenant_and_branch(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    make_client().get_record("Customer", "C1")
    login = fake.requests[0]
    assert (login.method, login.url) == ("POST", httpx.URL(f"{SITE}/entity/auth/login"))
    assert json.loads(login.content) == {
        "name": "apiuser",
        "password": "secret",
        "tenant": "Company",
        "branch": "HQ",
    }


def test_session_relogin_on_401_then_request_repeated(fake, make_client):
    route = fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    client = make_client()
    client.get_record("Customer", "C1")
    fake.expire_sessions()  # the idle timeout passed (section 2.1)

    assert client.get_record("Customer", "C1")["CustomerID"] == "C1"
    assert fake.logins == 2
    assert route.hits == 2  # the 401 never reached the route; the retry did
    assert [r.headers["cookie"].split(";")[0] for r in fake.data_requests()] == [
        ".ASPXAUTH=auth0",
        ".ASPXAUTH=auth0",
        ".ASPXAUTH=auth1",
    ]


def test_session_relogin_once_then_auth_failed(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(401, {"message": "The user is not signed in to the system."}))
    with pytest.raises(AuthFailed):
        make_client().get_record("Customer", "C1")
    assert fake.logins == 2


def test_session_renewed_by_one_process_is_used_by_the_other(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    first, second = make_client(), make_client()
    first.get_record("Customer", "C1")
    fake.expire_sessions()
    first.get_record("Customer", "C1")  # re-logs in and shares the new jar
    second.get_record("Customer", "C1")
    assert fake.logins == 2


def test_close_logs_out_the_session_this_process_created(fake, make_client, fake_redis, connection_name):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    client = make_client()
    client.get_record("Customer", "C1")
    client.close()
    client.close()  # safe twice

    assert len(fake.logouts) == 1
    logout = fake.logouts[0]
    assert logout.headers["content-length"] == "0"
    assert logout.headers["cookie"].startswith(".ASPXAUTH=auth0")
    assert fake.sessions == set()
    assert fake_redis.get(session_key(connection_name)) is None


def test_close_leaves_another_process_session_alone(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    owner, user = make_client(), make_client()
    owner.get_record("Customer", "C1")
    user.get_record("Customer", "C1")

    user.close()
    assert fake.logouts == []
    owner.close()
    assert len(fake.logouts) == 1


def test_logout_ends_the_shared_session_whoever_created_it(fake, make_client, fake_redis, connection_name):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    make_client().get_record("Customer", "C1")
    other = make_client()
    other.logout()
    assert len(fake.logouts) == 1
    assert fake_redis.get(session_key(connection_name)) is None


def test_close_without_a_session_sends_nothing(fake, make_client):
    make_client().close()
    assert fake.requests == []


def test_session_jar_is_encrypted_when_a_key_is_given(fake, make_client, fake_redis, connection_name):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    key = Fernet.generate_key()
    make_client(cipher=MultiFernet([Fernet(key)])).get_record("Customer", "C1")
    stored = fake_redis.get(session_key(connection_name))
    assert b"auth0" not in stored
    assert b"auth0" in Fernet(key).decrypt(stored)
    make_client(cipher=MultiFernet([Fernet(key)])).get_record("Customer", "C1")
    assert fake.logins == 1


def test_a_session_jar_sealed_with_the_old_key_is_read_after_a_new_key_is_put_first(
    fake, make_client, fake_redis, connection_name
):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    old, new = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
    make_client(cipher=MultiFernet([old])).get_record("Customer", "C1")

    make_client(cipher=MultiFernet([new, old])).get_record("Customer", "C1")

    assert fake.logins == 1
    assert b"auth0" in old.decrypt(fake_redis.get(session_key(connection_name)))


def test_set_cookie_on_a_data_response_updates_the_shared_jar(fake, make_client):
    renewed = httpx.Response(200, json=CUSTOMER, headers={"Set-Cookie": ".ASPXAUTH=auth0b; path=/; HttpOnly"})
    fake.on("GET", "Customer/C1", renewed, json_response(200, CUSTOMER))
    fake.sessions.add("auth0b")
    make_client().get_record("Customer", "C1")
    make_client().get_record("Customer", "C1")
    assert fake.data_requests()[1].headers["cookie"].startswith(".ASPXAUTH=auth0b;")


def test_parse_set_cookies_reads_deletions():
    headers = httpx.Headers(
        [
            ("Set-Cookie", ".ASPXAUTH=; expires=Mon, 11-Oct-1999 22:00:00 GMT; path=/"),
            ("Set-Cookie", "ASP.NET_SessionId=abc; path=/; HttpOnly; SameSite=Lax"),
            ("Set-Cookie", "Locale=; Max-Age=0"),
        ]
    )
    assert parse_set_cookies(headers) == {".ASPXAUTH": None, "ASP.NET_SessionId": "abc", "Locale": None}


# -- sign-in failures --------------------------------------------------------------------------------


def test_login_limit_raises_rate_limited_without_hammering(fake, make_client):
    fake.login_response = httpx.Response(429, text="API Login Limit")
    with pytest.raises(RateLimited) as info:
        make_client().get_record("Customer", "C1")
    assert info.value.retry_after == 60.0
    assert fake.logins == 1


def test_concurrent_login_cap_redirect_raises_rate_limited(fake, make_client):
    fake.login_response = httpx.Response(
        302,
        headers={
            "Location": "/Frames/Error.aspx?message=The number of concurrent API logins has been reached."
        },
    )
    with pytest.raises(RateLimited):
        make_client().get_record("Customer", "C1")


@pytest.mark.parametrize(
    "body",
    [
        {
            "message": "An error has occurred.",
            "exceptionMessage": "Invalid credentials.",
            "exceptionType": "PX.Data.PXException",
        },
        {
            "message": "An error has occurred.",
            "exceptionMessage": "A proper company ID cannot be determined.",
            "exceptionType": "PX.Data.PXUndefinedCompanyException",
        },
    ],
)
def test_login_refused_raises_auth_failed_once(fake, make_client, body):
    fake.login_response = json_response(500, body)
    with pytest.raises(AuthFailed) as info:
        make_client().get_record("Customer", "C1")
    assert "LEDGERBRIDGE_ACUMATICA_USERNAME" in str(info.value)
    assert fake.logins == 1


def test_login_server_fault_is_transient(fake, make_client):
    fake.login_response = http_error(500, "System.Exception", "database is down")
    with pytest.raises(Transient):
        make_client().get_record("Customer", "C1")


def test_login_timeout_is_not_repeated(fake, make_client):
    # A sign-in that timed out may have opened a session; another would count against the cap.
    fake.login_script = [httpx.ReadTimeout("slow")]
    with pytest.raises(Transient):
        make_client().get_record("Customer", "C1")
    assert fake.logins == 1


def test_login_refused_connection_is_retried(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    fake.login_script = [httpx.ConnectError("refused")]
    assert make_client().get_record("Customer", "C1")["CustomerID"] == "C1"
    assert fake.logins == 2


def test_missing_credentials_raise_auth_failed_before_any_request(fake, make_client):
    with pytest.raises(AuthFailed):
        make_client(target=make_target(username=None, password=None)).get_record("Customer", "C1")
    assert fake.requests == []


# -- OAuth --------------------------------------------------------------------------------------------


def test_oauth_password_grant_then_bearer_shared_and_refreshed(
    fake, make_client, fake_redis, connection_name
):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    durable = DurableCopy()
    saved = durable.saved
    target = make_target(client_id="6b2e@Company", client_secret="s3cret")
    first = make_client(target=target, refresh_tokens=durable)
    first.get_record("Customer", "C1")
    make_client(target=target).get_record("Customer", "C1")

    assert [g["grant_type"] for g in fake.token_grants] == ["password"]
    assert fake.token_grants[0] == {
        "grant_type": "password",
        "username": "apiuser",
        "password": "secret",
        "scope": "api offline_access",
        "client_id": "6b2e@Company",
        "client_secret": "s3cret",
    }
    assert [r.headers["authorization"] for r in fake.data_requests()] == ["Bearer at0", "Bearer at0"]
    assert saved == ["rt1"]

    fake.expire_sessions()  # the access token expired: refresh with the newest refresh token
    first.get_record("Customer", "C1")
    assert fake.token_grants[1]["grant_type"] == "refresh_token"
    assert fake.token_grants[1]["refresh_token"] == "rt1"
    assert saved == ["rt1", "rt3"]
    assert fake.data_requests()[-1].headers["authorization"] == "Bearer at2"

    first.close()
    assert fake.logouts[0].headers["authorization"] == "Bearer at2"


def test_oauth_refused_refresh_token_falls_back_to_password(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    target = make_target(client_id="6b2e@Company", client_secret="s3cret", refresh_token="stale")
    make_client(target=target).get_record("Customer", "C1")
    assert [g["grant_type"] for g in fake.token_grants] == ["refresh_token", "password"]


def test_oauth_wrong_password_raises_auth_failed(fake, make_client):
    target = make_target(client_id="6b2e@Company", client_secret="s3cret", password="wrong")
    with pytest.raises(AuthFailed) as info:
        make_client(target=target).get_record("Customer", "C1")
    assert "invalid_grant" in str(info.value)


# -- limits and retries --------------------------------------------------------------------------------


def test_429_pauses_the_fleet_bucket_then_succeeds(fake, make_client, fake_redis, connection_name):
    busy = httpx.Response(429, text="The custom error module does not recognize this error.")
    route = fake.on("GET", "Customer/C1", busy, busy, json_response(200, CUSTOMER))
    client = make_client()
    assert client.get_record("Customer", "C1")["CustomerID"] == "C1"
    assert route.hits == 3
    assert fake_redis.exists(f"ledgerbridge:{connection_name}:acumatica:bucket:pause")


def test_429_until_attempts_run_out_raises_rate_limited(fake, make_client):
    route = fake.on("GET", "Customer/C1", httpx.Response(429))
    with pytest.raises(RateLimited) as info:
        make_client().get_record("Customer", "C1")
    assert route.hits == 3
    assert info.value.retry_after == 0.004


def test_saturated_concurrency_limit_raises_rate_limited_without_sending(
    fake, make_client, fake_redis, connection_name
):
    fake.on("GET", "Customer/C1", json_response(200, CUSTOMER))
    client = make_client(throttle_wait=0.05)
    client.get_record("Customer", "C1")  # signs in first
    sent = len(fake.requests)
    now = fake_redis.time()[0]
    fake_redis.zadd(
        f"ledgerbridge:{connection_name}:acumatica:inflight", {f"w{i}": now + 600 for i in range(4)}
    )

    with pytest.raises(RateLimited):
        client.get_record("Customer", "C1")
    assert len(fake.requests) == sent


def test_get_retries_a_dropped_connection(fake, make_client):
    route = fake.on(
        "GET", "Customer/C1", httpx.RemoteProtocolError("peer closed"), json_response(200, CUSTOMER)
    )
    assert make_client().get_record("Customer", "C1")["CustomerID"] == "C1"
    assert route.hits == 2


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed connection")]
)
def test_create_put_with_no_answer_is_outcome_unknown_and_not_repeated(fake, make_client, failure):
    route = fake.on("PUT", "Invoice", failure, json_response(200, {"ReferenceNbr": {"value": "AR1"}}))
    with pytest.raises(OutcomeUnknown) as info:
        make_client().put("Invoice", {"Type": "Invoice", "CustomerOrder": "INV001"}, repeatable=False)
    assert route.hits == 1
    assert info.value.in_doubt is True


def test_create_put_gateway_timeout_is_outcome_unknown(fake, make_client):
    route = fake.on("PUT", "Invoice", httpx.Response(504, text="Gateway Timeout"))
    with pytest.raises(OutcomeUnknown):
        make_client().put("Invoice", {"Type": "Invoice"}, repeatable=False)
    assert route.hits == 1


def test_create_put_refused_connection_is_repeated(fake, make_client):
    route = fake.on(
        "PUT",
        "Invoice",
        httpx.ConnectError("refused"),
        json_response(200, {"ReferenceNbr": {"value": "AR1"}}),
    )
    assert make_client().put("Invoice", {"Type": "Invoice"}, repeatable=False) == {"ReferenceNbr": "AR1"}
    assert route.hits == 2


def test_create_put_lock_violation_is_repeated(fake, make_client):
    lock = http_error(
        500, "PX.Data.PXLockViolationException", "Another process has updated the 'ARInvoice' record."
    )
    route = fake.on("PUT", "Invoice", lock, json_response(200, {"ReferenceNbr": {"value": "AR1"}}))
    assert make_client().put("Invoice", {"Type": "Invoice"}, repeatable=False)["ReferenceNbr"] == "AR1"
    assert route.hits == 2


def test_upsert_put_timeout_is_repeated(fake, make_client):
    route = fake.on("PUT", "Customer", httpx.ReadTimeout("slow"), json_response(200, CUSTOMER))
    assert make_client().put("Customer", {"CustomerID": "C1"}, repeatable=True)["CustomerID"] == "C1"
    assert route.hits == 2


# -- error mapping ----------------------------------------------------------------------------------


def test_422_field_errors_become_rejected_reasons(fake, make_client):
    fake.on(
        "PUT",
        "Invoice",
        json_response(
            422,
            {
                "id": "b641",
                "error": "Inserting  'ARInvoice' record raised at least one error. Please review the errors.",
                "Customer": {"value": "NOPE", "error": "'Customer' cannot be found in the system."},
                "Details": [
                    {"Account": {"value": "99999", "error": "'Account' cannot be found in the system."}}
                ],
                "ReferenceNbr": {"value": "<NEW>"},
            },
        ),
    )
    with pytest.raises(Rejected) as info:
        make_client().put("Invoice", {"Customer": "NOPE"}, repeatable=False)
    assert [(r.field, r.message) for r in info.value.reasons] == [
        (None, "Inserting  'ARInvoice' record raised at least one error. Please review the errors."),
        ("Customer", "'Customer' cannot be found in the system."),
        ("Details[1].Account", "'Account' cannot be found in the system."),
    ]
    assert info.value.status == 422


def test_missing_record_500_is_not_found_without_retry(fake, make_client):
    route = fake.on(
        "GET",
        "Customer/C404",
        http_error(
            500,
            "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException",
            "No entity satisfies the condition.",
        ),
    )
    with pytest.raises(NotFound):
        make_client().get_record("Customer", "C404")
    assert route.hits == 1


def test_generic_500_on_get_is_retried_then_transient(fake, make_client):
    route = fake.on("GET", "Customer/C1", http_error(500, "System.Exception", "boom"))
    with pytest.raises(Transient):
        make_client().get_record("Customer", "C1")
    assert route.hits == 3


def test_403_is_rejected(fake, make_client):
    fake.on(
        "GET",
        "Subaccount/000000",
        json_response(
            403, {"message": "You have insufficient rights to access the Subaccounts (GL203000) form."}
        ),
    )
    with pytest.raises(Rejected) as info:
        make_client().get_record("Subaccount", "000000")
    assert "insufficient rights" in str(info.value)


def test_404_on_unknown_endpoint_names_the_variable_to_fix(fake, make_client):
    fake.endpoints = ("Default/23.200.001", "Default/25.200.001", "Default/26.200.001")
    with pytest.raises(EndpointNotFound) as info:
        make_client().get_record("Customer", "C1")
    message = str(info.value)
    assert "endpoint Default/24.200.001 not found on this instance" in message
    assert "set LEDGERBRIDGE_ACUMATICA_ENDPOINT to one of Default/23.200.001, Default/25.200.001" in message
    assert "GET https://erp.example.com/AcumaticaERP/entity lists them" in message
    assert isinstance(info.value, AuthFailed)


def test_404_for_an_entity_the_endpoint_lacks_is_rejected(fake, make_client):
    with pytest.raises(Rejected) as info:
        make_client().get_record("NoSuchEntity", "X")
    assert "NoSuchEntity/X does not exist in endpoint Default/24.200.001" in str(info.value)


# -- bodies, query strings, audit ---------------------------------------------------------------------


def test_put_sends_wrapped_body_with_exact_decimals(fake, make_client):
    route = fake.on("PUT", "Payment", json_response(200, {"ReferenceNbr": {"value": "000456"}}))
    make_client().put(
        "Payment",
        {"PaymentAmount": Decimal("125.50"), "Hold": False},
        expand=["DocumentsToApply"],
        repeatable=False,
    )
    sent = fake.data_requests("PUT")[0]
    assert sent.content == b'{"PaymentAmount":{"value":125.50},"Hold":{"value":false}}'
    assert sent.headers["content-type"] == "application/json"
    assert sent.url.query == b"$expand=DocumentsToApply"
    assert route.hits == 1


def test_get_list_encodes_filter_select_top_skip(fake, make_client):
    fake.on("GET", "Invoice", json_response(200, []))
    assert (
        make_client().get_list(
            "Invoice", filter="CustomerOrder eq 'A''B'", select=["Type", "ReferenceNbr"], top=50, skip=100
        )
        == []
    )
    assert fake.data_requests()[0].url.query == (
        b"$filter=CustomerOrder%20eq%20%27A%27%27B%27&$select=Type,ReferenceNbr&$skip=100&$top=50"
    )


def test_every_attempt_is_audited_with_secrets_redacted(fake, make_client, connection_name):
    fake.on("GET", "Customer/C1", httpx.Response(429), json_response(200, CUSTOMER))
    exchanges: list[Exchange] = []
    with audit_subject("customer:A-1"):
        make_client(audit=exchanges.append).get_record("Customer", "C1")

    assert [(e.method, e.status, e.attempt) for e in exchanges] == [
        ("POST", 204, 1),
        ("GET", 429, 1),
        ("GET", 200, 2),
    ]
    login, _, data = exchanges
    assert json.loads(login.request_body or "")["password"] == REDACTED
    assert login.response_headers["set-cookie"] == REDACTED
    assert data.request_headers["cookie"] == REDACTED
    assert all(e.api == "acumatica" and e.connection == connection_name for e in exchanges)
    assert all(e.subject == "customer:A-1" for e in exchanges)


def test_audit_hook_failure_does_not_fail_the_call(fake, make_client):
    fake.on("PUT", "Invoice", json_response(200, {"ReferenceNbr": {"value": "AR1"}}))

    def broken(_exchange):
        raise RuntimeError("ledger down")

    assert make_client(audit=broken).put("Invoice", {"Type": "Invoice"}, repeatable=False) == {
        "ReferenceNbr": "AR1"
    }


def test_network_failure_is_audited_with_its_error(fake, make_client):
    fake.on("GET", "Customer/C1", httpx.ReadTimeout("slow"), json_response(200, CUSTOMER))
    exchanges: list[Exchange] = []
    make_client(audit=exchanges.append).get_record("Customer", "C1")
    assert [(e.status, e.error) for e in exchanges[1:]] == [(None, "ReadTimeout: slow"), (200, None)]


# -- actions ----------------------------------------------------------------------------------------


def test_action_202_polls_location_on_the_same_session_until_204(
    fake, make_client, fake_redis, connection_name
):
    status_path = "/AcumaticaERP/entity/Default/24.200.001/Invoice/ReleaseInvoice/status/f84addec"
    gate = f"ledgerbridge:{connection_name}:acumatica:busy:Invoice"
    gate_held: list[bool] = []

    def running(request):
        gate_held.append(bool(fake_redis.exists(gate)))  # the form is held busy while it runs
        return httpx.Response(202)

    fake.on("POST", "Invoice/ReleaseInvoice", httpx.Response(202, headers={"Location": status_path}))
    poll = fake.on("GET", "Invoice/ReleaseInvoice/status/f84addec", running, running, httpx.Response(204))
    make_client().invoke("Invoice", "ReleaseInvoice", {"id": "7b89"})
    assert poll.hits == 3
    assert gate_held == [True, True]
    assert not fake_redis.exists(gate)
    post = fake.data_requests("POST")[0]
    assert body_of(post) == {"entity": {"id": "7b89"}}
    polls = fake.data_requests("GET")
    assert {str(r.url) for r in polls} == {"https://erp.example.com" + status_path}
    assert {r.headers["cookie"] for r in polls} == {post.headers["cookie"]}


def test_action_204_is_done_and_its_location_never_followed(fake, make_client):
    fake.on("POST", "Payment/ReleasePayment", httpx.Response(204, headers={"Location": "/bogus/status/1"}))
    make_client().invoke("Payment", "ReleasePayment", {"Type": "Payment", "ReferenceNbr": "000456"})
    assert fake.data_requests("GET") == []
    assert body_of(fake.data_requests("POST")[0]) == {
        "entity": {"Type": {"value": "Payment"}, "ReferenceNbr": {"value": "000456"}}
    }


def test_action_still_running_past_the_timeout_is_outcome_unknown(fake, make_client):
    fake.on(
        "POST",
        "Invoice/ReleaseInvoice",
        httpx.Response(
            202,
            headers={"Location": "/AcumaticaERP/entity/Default/24.200.001/Invoice/ReleaseInvoice/status/g1"},
        ),
    )
    fake.on("GET", "Invoice/ReleaseInvoice/status/g1", httpx.Response(202))
    with pytest.raises(OutcomeUnknown):
        make_client(action_timeout=0.01).invoke("Invoice", "ReleaseInvoice", {"id": "7b89"})


def test_action_session_lost_while_polling_is_outcome_unknown(fake, make_client):
    def expire_then_202(request):
        fake.expire_sessions()
        return httpx.Response(
            202,
            headers={"Location": "/AcumaticaERP/entity/Default/24.200.001/Invoice/ReleaseInvoice/status/g2"},
        )

    fake.on("POST", "Invoice/ReleaseInvoice", expire_then_202)
    with pytest.raises(OutcomeUnknown):
        make_client().invoke("Invoice", "ReleaseInvoice", {"id": "7b89"})
    assert fake.logins == 1  # no re-login: the status exists only in the lost session


def test_requests_wait_while_another_process_runs_an_action_on_the_form(
    fake, make_client, fake_redis, connection_name
):
    fake.on("PUT", "Invoice", json_response(200, {"ReferenceNbr": {"value": "AR1"}}))
    client = make_client(action_timeout=0.005)
    fake_redis.set(f"ledgerbridge:{connection_name}:acumatica:busy:Invoice", "other", px=60_000)
    with pytest.raises(Transient) as info:
        client.put("Invoice", {"Type": "Invoice"}, repeatable=False)
    assert "Invoice form is busy" in str(info.value)
    assert fake.data_requests() == []

    fake_redis.delete(f"ledgerbridge:{connection_name}:acumatica:busy:Invoice")
    assert client.put("Invoice", {"Type": "Invoice"}, repeatable=False) == {"ReferenceNbr": "AR1"}


def test_endpoints_lists_discovery(fake, make_client):
    fake.endpoints = ("Default/24.200.001", "Default/25.200.001")
    assert make_client().endpoints() == ["Default/24.200.001", "Default/25.200.001"]
    assert BASE.endswith("/entity/Default/24.200.001/")
