"""The Finance console over HTTP: sign-in, sessions, CSRF and roles on every route; the pages'
content; the actions (retry, approve, reject, evidence) and their audit trail; no secret on any
page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr

from shared.close.state import PreviewEntry, PreviewLine, ReconcileLine, ReconcileState, details_update
from shared.journal_requests import request_entry
from shared.ledger.models import AuditEvent, CloseStatus, SyncRecord, UserRole, utcnow
from tests.integration.console.conftest import PASSWORD, Console, csrf_of
from worker.console import auth

pytestmark = pytest.mark.timeout(60)

PERIOD = "December 2024"

GET_ROUTES = [
    "/console/",
    "/console/closes",
    "/console/closes/{run}",
    "/console/records",
    "/console/records/acme/invoices/inv-parked",
    f"/console/periods/acme/{PERIOD}",
    f"/console/periods/acme/{PERIOD}/evidence.zip",
    "/console/journal-requests",
]
API_ROUTES = ["/console/api/overview", "/console/api/closes/{run}"]
POST_ROUTES = {
    "/console/logout": UserRole.VIEWER,
    "/console/records/acme/invoices/inv-parked/retry": UserRole.PREPARER,
    "/console/closes/{run}/approve": UserRole.APPROVER,
    "/console/closes/{run}/reject": UserRole.APPROVER,
    "/console/journal-requests/1/decide": UserRole.APPROVER,
}


# -- the ledger's contents for the pages -----------------------------------------------------------


def add_record(
    console: Console,
    zuora_id: str,
    *,
    state: str,
    error: str | None,
    object_type: str = "invoice",
    change_note: str | None = None,
) -> None:
    now = utcnow()
    with console.ledger.session() as session:
        session.add(
            SyncRecord(
                connection="acme",
                object_type=object_type,
                zuora_id=zuora_id,
                zuora_number=f"INV-{zuora_id}",
                state=state,
                attempts=3,
                last_error=error,
                change_note=change_note,
                source="pull",
                payload={"id": zuora_id},
                zuora_updated=now - timedelta(minutes=30),
                posted_at=now - timedelta(minutes=5) if state == "marked" else None,
                created_at=now,
                updated_at=now,
            )
        )


def awaiting_run(console: Console, started_by: str = "pat") -> int:
    from shared.close.approval import record_maker, request

    run, _ = console.ledger.open_close_run("acme", PERIOD, step="check")
    entry = PreviewEntry(
        number="JE-00000001",
        date="2024-12-31",
        currency="USD",
        description="December revenue",
        debit=Decimal("1200.00"),
        credit=Decimal("1200.00"),
        lines=[
            PreviewLine(
                account="1200", subaccount=None, debit=Decimal("1200.00"), credit=Decimal(0), description="AR"
            ),
            PreviewLine(
                account="4000",
                subaccount=None,
                debit=Decimal(0),
                credit=Decimal("1200.00"),
                description="Revenue",
            ),
        ],
    )
    run = record_maker(console.ledger, run, started_by)
    state = request(run, [entry])
    assert state is not None
    console.ledger.update_close_run(
        run.id or 0, status=CloseStatus.AWAITING_APPROVAL.value, details_update=details_update(state)
    )
    return run.id or 0


def reconciled_run(console: Console) -> int:
    run, _ = console.ledger.open_close_run("acme", "November 2024", step="finished")
    line = ReconcileLine(
        account="4000",
        currency="USD",
        zuora_debit=Decimal(0),
        zuora_credit=Decimal("990.10"),
        ledger_debit=Decimal(0),
        ledger_credit=Decimal("990.10"),
        erp_debit=Decimal(0),
        erp_credit=Decimal("990.10"),
    )
    console.ledger.update_close_run(
        run.id or 0,
        status=CloseStatus.DONE.value,
        details_update=details_update(ReconcileState(lines=[line], differences=[], entries=1)),
    )
    return run.id or 0


@pytest.fixture
def run_id(console: Console) -> int:
    add_record(
        console,
        "inv-parked",
        state="parked",
        error="no ERP account mapped for accounting code 4999 (Revenue EU)",
    )
    add_record(console, "inv-failed", state="failed", error="the ERP answered 500 Internal Server Error")
    add_record(console, "inv-done", state="marked", error=None)
    request_entry(console.ledger, "acme", MANUAL_ENTRY, user="pat")  # request 1, asked by pat
    return awaiting_run(console)


def actions(console: Console) -> list[tuple[str | None, str | None, str | None]]:
    with console.ledger.reading() as session:
        rows = session.execute(
            sa.select(AuditEvent.subject, AuditEvent.message, AuditEvent.actor).order_by(AuditEvent.id)
        )
        return [tuple(r) for r in rows]


# -- refused: anonymous, wrong role, no CSRF token, another secret ---------------------------------


def test_every_route_refuses_an_anonymous_request(console, run_id):
    client = console.client()
    for path in GET_ROUTES:
        answer = client.get(path.format(run=run_id))
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/login?next=%2Fconsole"), path
    for path in API_ROUTES:
        answer = client.get(path.format(run=run_id))
        assert answer.status_code == 401, path
        assert answer.json() == {"error": "sign in first"}
    for path in POST_ROUTES:
        answer = client.post(path.format(run=run_id), data={"csrf_token": "x", "comment": "ok"})
        assert answer.status_code == 403, path
        assert "Sign in first" in answer.text
    assert console.recorder.retries == [] and console.recorder.packs == []
    with console.ledger.reading() as session:
        assert session.get(type(console.ledger.get_close_run(run_id)), run_id).status == "awaiting_approval"


def test_each_action_refuses_a_role_below_its_own(console, run_id):
    for name, role in (("vera", UserRole.VIEWER), ("pat", UserRole.PREPARER), ("abe", UserRole.APPROVER)):
        client = console.sign_in(name)
        token = csrf_of(client.get("/console/").text)
        for path, needed in POST_ROUTES.items():
            if role.at_least(needed):
                continue
            answer = client.post(path.format(run=run_id), data={"csrf_token": token, "comment": "looks fine"})
            assert answer.status_code == 403, (name, path)
            assert f"needs the {needed.value} role" in answer.text
    assert console.recorder.retries == []
    assert console.ledger.get_close_run(run_id).status == "awaiting_approval"


def test_a_form_without_its_csrf_token_is_refused(console, run_id):
    client = console.sign_in("ada")
    for path in POST_ROUTES:
        for data in ({}, {"csrf_token": "forged-token"}):
            answer = client.post(path.format(run=run_id), data={**data, "comment": "fine"})
            assert answer.status_code == 403, path
            assert "security token" in answer.text
    assert client.get("/console/").status_code == 200  # still signed in: logout was refused too
    assert console.recorder.retries == []
    assert console.ledger.get_close_run(run_id).status == "awaiting_approval"
    # The sign-in form: without the cookie's token, or with another one.
    fresh = console.client()
    token = csrf_of(fresh.get("/console/login").text)
    for data in ({}, {"csrf_token": token + "x"}):
        answer = fresh.post("/console/login", data={"username": "ada", "password": PASSWORD, **data})
        assert answer.status_code == 403
    other = console.client()
    answer = other.post("/console/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 403  # a token without its cookie


def test_a_session_cookie_signed_with_another_secret_is_refused(console, run_id):
    client = console.client()
    now = console.clock().timestamp()

    def with_cookie(value: str, path: str = "/console/") -> int:
        return client.get(path, headers={"Cookie": f"{auth.SESSION_COOKIE}={value}"}).status_code

    forged = URLSafeTimedSerializer(
        "another secret entirely, 40 characters..", salt="ledgerbridge.console.session"
    )
    assert with_cookie(forged.dumps(["ada", now, now, "t"])) == 303
    assert with_cookie(forged.dumps(["ada", now, now, "t"]), "/console/api/overview") == 401
    # The same cookie signed with the console's own secret is a session (so the refusal was the secret).
    genuine = auth.Signer(console.settings.console_secret.get_secret_value()).dump(
        auth.Session("ada", now, now, "t")
    )
    assert with_cookie(genuine) == 200
    payload, _, signature = genuine.rpartition(".")
    assert with_cookie(f"{payload}.{signature[::-1]}") == 303
    assert with_cookie("not-a-session") == 303


def test_without_a_console_secret_every_route_says_to_set_it(console, run_id):
    client = console.client(console_secret=None)
    for path in ["/console/", "/console/login", *[p.format(run=run_id) for p in GET_ROUTES]]:
        answer = client.get(path)
        assert answer.status_code == 503, path
        assert "LEDGERBRIDGE_CONSOLE_SECRET" in answer.text
    assert client.post("/console/login", data={"username": "ada", "password": PASSWORD}).status_code == 503
    assert client.get("/healthz").status_code == 200  # the receiver is unaffected


# -- sessions ----------------------------------------------------------------------------------------


def test_sign_in_sets_a_secure_httponly_strict_cookie_and_goes_to_a_same_site_next(console):
    client = console.client()
    token = csrf_of(client.get("/console/login").text)
    answer = client.post(
        "/console/login",
        data={
            "username": "vera",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/console/records?stream=invoices",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/records?stream=invoices"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(auth.SESSION_COOKIE))
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/console", "Max-Age=28800"):
        assert flag in cookie
    for target in ("https://evil.example/console/", "//evil.example/console", "/elsewhere", "/console/login"):
        fresh = console.client()
        token = csrf_of(fresh.get("/console/login").text)
        moved = fresh.post(
            "/console/login",
            data={"username": "vera", "password": PASSWORD, "csrf_token": token, "next": target},
        )
        assert moved.headers["location"] == "/console/", target
    insecure = console.client(console_insecure_cookies=True)
    token = csrf_of(insecure.get("/console/login").text)
    answer = insecure.post(
        "/console/login", data={"username": "vera", "password": PASSWORD, "csrf_token": token}
    )
    assert "Secure" not in next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith(auth.SESSION_COOKIE)
    )


def test_wrong_passwords_are_audited_without_the_password_and_lock_the_user(console):
    client = console.client()
    for attempt in range(5):
        token = csrf_of(client.get("/console/login").text)
        answer = client.post(
            "/console/login",
            data={"username": "pat", "password": f"wrong guess {attempt}", "csrf_token": token},
        )
        assert answer.status_code == 401
        assert "Wrong user name or password" in answer.text
    refused = [a for a in actions(console) if a[0] == "console:login"]
    assert len(refused) == 5 and all(a[2] == "pat" and "wrong password" in (a[1] or "") for a in refused)
    assert "locked" in (refused[-1][1] or "")
    for row in actions(console):
        assert "wrong guess" not in str(row)
    # Locked: even the right password is refused for now, and the page does not say which.
    token = csrf_of(client.get("/console/login").text)
    locked = client.post(
        "/console/login", data={"username": "pat", "password": PASSWORD, "csrf_token": token}
    )
    assert locked.status_code == 401 and "Wrong user name or password" in locked.text
    token = csrf_of(client.get("/console/login").text)
    unknown = client.post(
        "/console/login", data={"username": "mallory", "password": PASSWORD, "csrf_token": token}
    )
    assert unknown.status_code == 401
    assert actions(console)[-1] == ("console:login", "sign-in refused for 'mallory': unknown user", None)


def test_a_session_ends_when_idle_on_sign_out_and_when_the_user_changes(console, run_id):
    client = console.sign_in("abe")
    assert client.get("/console/").status_code == 200
    console.clock.advance(minutes=479)
    assert client.get("/console/").status_code == 200  # used: the idle time starts again
    console.clock.advance(minutes=479)
    assert client.get("/console/").status_code == 200
    console.clock.advance(minutes=481)
    assert client.get("/console/").status_code == 303

    console.clock.now = datetime.now(UTC)  # the ledger's own changes below are stamped in real time
    client = console.sign_in("abe")
    kept = client.cookies.get(auth.SESSION_COOKIE)
    token = csrf_of(client.get("/console/").text)
    out = client.post("/console/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert ("console:login", "signed out", "abe") in actions(console)
    console.clock.advance(seconds=1)
    replayed = console.client().get("/console/", headers={"Cookie": f"{auth.SESSION_COOKIE}={kept}"})
    assert replayed.status_code == 303  # the old cookie is no longer a session

    console.clock.now = datetime.now(UTC)
    client = console.sign_in("abe")
    assert 'data-testid="approve"' in client.get(f"/console/closes/{run_id}").text
    console.ledger.set_user_role("abe", UserRole.VIEWER)
    page = client.get(f"/console/closes/{run_id}").text
    assert 'data-testid="approve"' not in page and "Only an approver" in page
    console.ledger.set_user_disabled("abe", True)
    assert client.get("/console/").status_code == 303
    console.ledger.set_user_disabled("abe", False)
    assert client.get("/console/").status_code == 303  # disabling ended the session for good


def test_a_trusted_proxy_header_signs_in_a_known_user_only_when_configured(console):
    plain = console.client()
    assert plain.get("/console/", headers={"X-Forwarded-User": "ada"}).status_code == 303
    proxied = console.client(console_trusted_user_header="X-Forwarded-User")
    page = proxied.get("/console/", headers={"X-Forwarded-User": "ada"})
    assert page.status_code == 200 and "ada (admin)" in page.text
    assert proxied.get("/console/", headers={"X-Forwarded-User": "mallory"}).status_code == 403
    console.ledger.set_user_disabled("vera", True)
    assert proxied.get("/console/", headers={"X-Forwarded-User": "vera"}).status_code == 403
    # Its forms still need the session's CSRF token.
    other = console.client(console_trusted_user_header="X-Forwarded-User")
    token = csrf_of(other.get("/console/", headers={"X-Forwarded-User": "pat"}).text)
    retry = "/console/records/acme/invoices/inv-x/retry"
    assert other.post(retry, data={}, headers={"X-Forwarded-User": "pat"}).status_code == 403
    assert (
        other.post(retry, data={"csrf_token": token}, headers={"X-Forwarded-User": "pat"}).status_code == 404
    )


# -- the pages -----------------------------------------------------------------------------------------


def test_the_overview_shows_each_connection_and_its_live_figures(console, run_id):
    reconciled_run(console)
    client = console.sign_in("vera")
    page = client.get("/console/")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="overview"' in html and 'data-testid="connection-acme"' in html
    assert "<svg" in html and "records posted in the last 24 hours" in html
    assert "awaiting approval" in html  # the open close run
    for header, value in {
        "Content-Security-Policy": "script-src 'self'",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }.items():
        assert value in page.headers[header]
    live = client.get("/console/api/overview").json()
    assert live["values"]["acme.invoices.parked"] == "1"
    assert live["values"]["acme.invoices.failed"] == "1"
    assert live["values"]["acme.invoices.marked"] == "1"
    assert live["values"]["acme.pulled"] == "3"
    assert live["values"]["acme.open_runs"] == "1"
    for key in live["values"]:
        assert f'data-live="{key}"' in html, key


def test_the_close_run_page_lists_steps_and_what_the_approval_will_post(console, run_id):
    client = console.sign_in("vera")
    page = client.get(f"/console/closes/{run_id}").text
    for testid in ("close-run", "close-steps", "close-status", "approval"):
        assert f'data-testid="{testid}"' in page
    assert "waiting for approval" in page and "Started by <strong>pat</strong>" in page
    assert "JE-00000001" in page and "1,200.00" in page
    assert 'data-testid="approve"' not in page  # a viewer sees the panel, not the form
    live = client.get(f"/console/api/closes/{run_id}").json()
    assert live["values"]["status"] == "awaiting approval"
    assert [s["name"] for s in live["steps"]][:3] == ["lookup", "trial_balance", "close_period"]
    listing = client.get("/console/closes").text
    assert f'href="/console/closes/{run_id}"' in listing
    assert client.get("/console/closes/999").status_code == 404


def test_the_approver_who_started_the_close_is_refused_and_another_approves(console, run_id):
    awaiting = run_id  # started by pat
    maker = console.sign_in("pat")  # pat started it; pat is a preparer, so the role refuses first
    token = csrf_of(maker.get(f"/console/closes/{awaiting}").text)
    assert maker.post(f"/console/closes/{awaiting}/approve", data={"csrf_token": token}).status_code == 403

    console.ledger.set_user_role("pat", UserRole.APPROVER)
    token = csrf_of(maker.get(f"/console/closes/{awaiting}").text)
    refused = maker.post(f"/console/closes/{awaiting}/approve", data={"csrf_token": token, "comment": ""})
    assert refused.status_code == 409
    error = re.search(r'data-testid="error">([^<]+)<', refused.text)
    assert error and "pat started close run" in error.group(1) and "Traceback" not in refused.text
    assert console.ledger.get_close_run(awaiting).status == "awaiting_approval"

    checker = console.sign_in("abe")
    token = csrf_of(checker.get(f"/console/closes/{awaiting}").text)
    no_comment = checker.post(
        f"/console/closes/{awaiting}/reject", data={"csrf_token": token, "comment": " "}
    )
    assert no_comment.status_code == 409 and "needs a comment" in no_comment.text
    done = checker.post(
        f"/console/closes/{awaiting}/approve", data={"csrf_token": token, "comment": "matches the TB"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/console/closes/{awaiting}"
    assert console.ledger.get_close_run(awaiting).status == "running"
    assert (f"close:{awaiting}", "console: close approved by abe", "abe") in actions(console)
    assert checker.post(f"/console/closes/{awaiting}/approve", data={"csrf_token": token}).status_code == 409


def test_a_rejection_with_a_comment_sends_the_close_back(console, run_id):
    client = console.sign_in("ada")
    token = csrf_of(client.get(f"/console/closes/{run_id}").text)
    answer = client.post(
        f"/console/closes/{run_id}/reject", data={"csrf_token": token, "comment": "4000 is wrong"}
    )
    assert answer.status_code == 303
    run = console.ledger.get_close_run(run_id)
    assert run.status == "needs_attention" and "4000 is wrong" in (run.error or "")
    assert (f"close:{run_id}", "console: close rejected by ada", "ada") in actions(console)


def test_parked_and_failed_records_filter_by_stream_and_reason(console, run_id):
    add_record(
        console,
        "pay-1",
        state="parked",
        error="payment method Wire 77 has no ERP cash account",
        object_type="payment",
    )
    client = console.sign_in("vera")
    page = client.get("/console/records").text
    assert page.count('data-testid="record-row"') == 3
    assert "no ERP account mapped for accounting code 4999" in page and "inv-done" not in page
    invoices = client.get("/console/records", params={"stream": "invoices"}).text
    assert invoices.count('data-testid="record-row"') == 2
    reason = re.search(r'<option value="([^"]*ERP cash account[^"]*)"', page)
    assert reason is not None
    by_reason = client.get("/console/records", params={"reason": reason.group(1).replace("&#34;", '"')}).text
    assert by_reason.count('data-testid="record-row"') == 1 and "pay-1" in by_reason
    empty = client.get("/console/records", params={"connection": "other"}).text
    assert 'data-testid="records-empty"' in empty and "No parked or failed record matches" in empty


def test_a_posted_record_changed_after_posting_is_listed_with_what_changed(console, run_id):
    note = "changed in Zuora after it was posted (amount: '100.00' -> '105.00'); the ERP document was not changed"
    add_record(console, "inv-changed", state="marked", error=None, change_note=note)
    client = console.sign_in("vera")

    page = client.get("/console/records").text

    assert page.count('data-testid="record-row"') == 3
    assert "changed after posting" in page and "INV-inv-changed" in page
    record = client.get("/console/records/acme/invoices/inv-changed").text
    assert 'data-testid="record-change"' in record and "&#39;105.00&#39;" in record


def test_a_record_page_shows_its_timeline_and_dry_run_and_a_preparer_retries_it(console, run_id):
    console.ledger.note(
        "invoice:inv-parked", "parked: no ERP account mapped for accounting code 4999", "acme"
    )
    viewer = console.sign_in("vera")
    page = viewer.get("/console/records/acme/invoices/inv-parked").text
    assert "no ERP account mapped" in page and 'data-testid="dry-run-payload"' in page
    assert 'data-testid="dry-run-diff"' in page and "120.00" in page
    assert 'data-testid="retry"' not in page and "A preparer, approver or admin can retry it" in page
    assert viewer.get("/console/records/acme/invoices/nope").status_code == 404
    assert viewer.get("/console/records/acme/widgets/inv-parked").status_code == 404

    preparer = console.sign_in("pat")
    page = preparer.get("/console/records/acme/invoices/inv-parked").text
    assert 'data-testid="retry"' in page
    answer = preparer.post(
        "/console/records/acme/invoices/inv-parked/retry", data={"csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 200
    result = re.search(r'data-testid="retry-result".*?</section>', answer.text, re.S)
    assert result and "posted" in result.group(0) and "AR-000123" in result.group(0)
    assert console.recorder.retries == [
        ("acme", "invoice:inv-parked", "retried in the Finance console by pat")
    ]
    mine = [a for a in actions(console) if a[0] == "invoice:inv-parked" and a[2] == "pat"]
    assert [m[1] for m in mine] == [
        "console: retry requested by pat",
        "console: retry by pat: posted (parked -> posted)",
    ]


def test_the_reconciliation_page_and_the_evidence_download(console, run_id):
    reconciled_run(console)
    client = console.sign_in("vera")
    page = client.get("/console/periods/acme/November 2024").text
    assert 'data-testid="reconciliation"' in page and page.count('data-testid="reconciliation-row"') == 1
    assert "every line matches to the cent" in page and "990.10" in page
    empty = client.get(f"/console/periods/acme/{PERIOD}").text
    assert 'data-testid="reconciliation-empty"' in empty and "awaiting approval" in empty
    pack = client.get("/console/periods/acme/November 2024/evidence.zip")
    assert pack.status_code == 200 and pack.headers["content-type"] == "application/zip"
    assert 'filename="evidence-acme-November-2024.zip"' in pack.headers["content-disposition"]
    assert console.recorder.packs == [
        {"connection": "acme", "period": "November 2024", "generated_by": "vera"}
    ]
    assert (
        "period:acme:November 2024",
        "console: evidence pack of November 2024 downloaded by vera",
        "vera",
    ) in actions(console)
    missing = client.get("/console/periods/acme/Never Closed/evidence.zip")
    assert missing.status_code == 404 and "no close run" in missing.text


def test_errors_are_pages_of_the_console(console):
    client = console.sign_in("vera")
    for path, status in (("/console/nowhere", 404), ("/console/closes/not-a-number", 422)):
        answer = client.get(path)
        assert answer.status_code == status
        assert 'data-testid="error-page"' in answer.text and "Traceback" not in answer.text


def test_nothing_secret_appears_on_any_page(console, run_id):
    secrets = {
        "zuora_client_secret": "zuora-client-secret-value-123",
        "acumatica_password": "acumatica-password-value-456",
        "callout_hmac_secret": "callout-hmac-secret-value-789",
        "metrics_token": "metrics-token-value-000",
    }
    reconciled_run(console)
    chosen = {key: SecretStr(value) for key, value in secrets.items()}
    client = console.sign_in("ada", console.client(**chosen))
    user = console.ledger.get_user("ada")
    assert user is not None
    forbidden = [
        *secrets.values(),
        console.settings.console_secret.get_secret_value(),
        user.password_hash,
        PASSWORD,
    ]
    pages = [
        "/console/",
        "/console/api/overview",
        "/console/closes",
        f"/console/closes/{run_id}",
        f"/console/api/closes/{run_id}",
        "/console/records",
        "/console/records/acme/invoices/inv-parked",
        "/console/periods/acme/November 2024",
        "/console/login",
    ]
    for path in pages:
        body = client.get(path).text
        for secret in forbidden:
            assert secret not in body, (path, secret[:8])


# -- manual journal entries waiting for approval ------------------------------------------------------

MANUAL_ENTRY = {
    "accountingPeriodName": PERIOD,
    "journalEntryDate": "2024-12-31",
    "currency": "USD",
    "notes": "Year-end bonus accrual",
    "journalEntryItems": [
        {"accountingCodeName": "Bonus Expense", "type": "Debit", "amount": "1250.00"},
        {"accountingCodeName": "Accrued Liabilities", "type": "Credit", "amount": "1250.00"},
    ],
}


def test_manual_entries_wait_for_an_approver_other_than_the_asker(console, run_id):
    console.ledger.set_user_role("pat", UserRole.APPROVER)
    asker = console.sign_in("pat")
    page = asker.get("/console/journal-requests?connection=acme")
    assert page.status_code == 200
    assert "Year-end bonus accrual" in page.text and "Bonus Expense" in page.text
    assert 'data-testid="approve-request"' not in page.text  # pat asked for it
    token = csrf_of(page.text)
    refused = asker.post(
        "/console/journal-requests/1/decide", data={"csrf_token": token, "decision": "approve", "comment": ""}
    )
    assert refused.status_code == 409 and "pat asked for journal entry request 1" in refused.text
    assert console.recorder.created == []

    checker = console.sign_in("abe")
    page = checker.get("/console/journal-requests?connection=acme")
    assert 'data-testid="approve-request"' in page.text
    done = checker.post(
        "/console/journal-requests/1/decide",
        data={"csrf_token": csrf_of(page.text), "decision": "approve", "comment": "agreed with payroll"},
    )

    assert done.status_code == 200
    assert "Request 1 was approved and created in Zuora as JE-00000001." in done.text
    (created, key) = console.recorder.created[0]
    assert created["notes"] == "Year-end bonus accrual" and key[0] == "manual-journal-entry"
    row = console.ledger.get_journal_request(1)
    assert (row.status, row.decided_by, row.comment) == ("created", "abe", "agreed with payroll")
    assert ("journal-request:1", "console: approve by abe (created)", "abe") in actions(console)
