"""What every page of the Finance console shares: its injectable dependencies
(:class:`ConsoleDeps`), its errors, the signed-in user of a request (:class:`Visit`), and
:class:`Kit` - settings, sessions, CSRF, rendering and the audit trail - which the route modules
(:mod:`.app`, :mod:`.closes`, :mod:`.records`) are given."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from shared.ledger.models import ConsoleUser, SyncRecord, UserRole
from shared.ledger.repo import Ledger
from shared.settings import Settings
from worker.console import auth

PREFIX = "/console"
HERE = Path(__file__).parent
log = logging.getLogger("ledgerbridge.console")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- what the console needs, injectable -----------------------------------------------------------


def _preview(connection: str, record: SyncRecord) -> Any:
    """``ledgerbridge replay --dry-run`` of one record (re-fetched from Zuora, rendered by the ERP
    adapter, diffed against what was sent); changes nothing."""
    from shared.replay import preview
    from worker.wiring import item_context

    return preview(item_context(connection), record)


def _retry(connection: str, record: SyncRecord, reason: str) -> Any:
    """``ledgerbridge replay`` of one record: back to pending and posted through the posting path."""
    from shared.replay import replay_records
    from worker.wiring import item_context

    return replay_records(item_context(connection), [record], reason=reason)[0]


def _approval_view(ledger: Ledger, run_id: int) -> Any:
    from shared.close.approval import approval_view

    return approval_view(ledger, run_id)


def _decide(ledger: Ledger, run_id: int, *, user: str, approve: bool, comment: str) -> Any:
    from worker.approvals import decide_and_resume

    return decide_and_resume(ledger, run_id, user=user, approve=approve, comment=comment)


def _evidence(
    ledger: Ledger, settings: Settings, connection: str, period_name: str, *, generated_by: str
) -> bytes:
    from shared.evidence import build_evidence_pack

    return build_evidence_pack(ledger, settings, connection, period_name, generated_by=generated_by)


def _decide_request(ledger: Ledger, request_id: int, *, user: str, approve: bool, comment: str) -> Any:
    from worker.approvals import decide_journal_request

    return decide_journal_request(ledger, request_id, user=user, approve=approve, comment=comment)


def _refused_types() -> tuple[type[Exception], ...]:
    from shared.close.approval import ApprovalRefused
    from shared.journal_requests import RequestRefused

    return (ApprovalRefused, RequestRefused)


@dataclass
class ConsoleDeps:
    """Where the console gets its settings and ledger, and the work it hands on (the replay's dry
    run and re-drive, the approval, the evidence pack). Tests replace what talks to Zuora or the
    ERP."""

    settings: Callable[[], Settings]
    ledger: Callable[[], Ledger]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    preview: Callable[[str, SyncRecord], Any] = _preview
    retry: Callable[[str, SyncRecord, str], Any] = _retry
    approval_view: Callable[[Ledger, int], Any] = _approval_view
    decide: Callable[..., Any] = _decide
    decide_request: Callable[..., Any] = _decide_request
    evidence: Callable[..., bytes] = _evidence
    refused: Callable[[], tuple[type[Exception], ...]] = _refused_types


# -- errors and the request's user ----------------------------------------------------------------


class ConsoleError(Exception):
    """Answer with an error page (the layout, a title and a message)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInNeeded(Exception):
    """No valid session: a page goes to the sign-in form, an API call or a form post is refused."""


@dataclass
class Visit:
    """The signed-in user of one request and the session to send back (re-signed when used)."""

    user: ConsoleUser
    role: UserRole
    session: auth.Session
    resign: bool

    @property
    def name(self) -> str:
        return self.user.name

    def can(self, role: UserRole) -> bool:
        return self.role.at_least(role)


class Kit:
    """The console's shared machinery for one app: its dependencies and templates."""

    def __init__(self, deps: ConsoleDeps, templates: Jinja2Templates) -> None:
        self.deps = deps
        self.templates = templates

    def settings(self) -> Settings:
        return self.deps.settings()

    def signer(self) -> auth.Signer:
        secret = self.settings().console_secret
        if secret is None or not secret.get_secret_value():
            raise ConsoleError(
                503,
                "The console is not configured",
                "Set LEDGERBRIDGE_CONSOLE_SECRET (a random string of at least 32 characters) for the web "
                "process and restart it; then add a user with `ledgerbridge user add NAME --role admin`.",
            )
        return auth.Signer(secret.get_secret_value())

    def idle(self) -> timedelta:
        return timedelta(minutes=self.settings().console_session_minutes)

    def secure(self) -> bool:
        return not self.settings().console_insecure_cookies

    def visit(self, request: Request, need: UserRole = UserRole.VIEWER) -> Visit:
        """The request's user, who must have at least ``need`` (:class:`SignInNeeded`, or a 403)."""
        sign = self.signer()
        ledger = self.deps.ledger()
        now = self.deps.clock().timestamp()
        session = sign.load(request.cookies.get(auth.SESSION_COOKIE), idle=self.idle(), now=now)
        user = auth.session_user(ledger, session) if session is not None else None
        header = self.settings().console_trusted_user_header
        resign = False
        if header and request.headers.get(header):
            proxied = auth.trusted_user(ledger, request.headers.get(header))
            if proxied is None:
                raise ConsoleError(
                    403,
                    "Not a console user",
                    "The proxy signed you in as a user the ledger does not know (or one that is disabled). "
                    "Ask an administrator to add you with `ledgerbridge user add`.",
                )
            if user is None or session is None or user.name != proxied.name:
                session, user, resign = auth.new_session(proxied.name, now), proxied, True
        if user is None or session is None:
            raise SignInNeeded()
        role = auth.role_of(user)
        if not role.at_least(need):
            raise ConsoleError(
                403,
                "Not allowed",
                f"This needs the {need.value} role or higher; you are signed in as {user.name} ({role.value}).",
            )
        if now - session.seen > 60:
            session, resign = session.touched(now), True
        return Visit(user, role, session, resign)

    def set_session(self, response: Response, session: auth.Session) -> None:
        response.set_cookie(
            auth.SESSION_COOKIE,
            self.signer().dump(session),
            max_age=int(self.idle().total_seconds()),
            path=PREFIX,
            secure=self.secure(),
            httponly=True,
            samesite="strict",
        )

    def set_login_cookie(self, response: Response, cookie: str) -> None:
        """The sign-in form's own CSRF cookie (the form has no session yet)."""
        response.set_cookie(
            auth.LOGIN_COOKIE,
            cookie,
            max_age=auth.LOGIN_FORM_SECONDS,
            path=PREFIX,
            secure=self.secure(),
            httponly=True,
            samesite="strict",
        )

    def render(
        self, request: Request, template: str, context: dict[str, Any], *, me: Visit | None, status: int = 200
    ) -> Response:
        values = {"me": me, "csrf": me.session.csrf if me else "", "roles": UserRole, **context}
        response = self.templates.TemplateResponse(request, template, values, status_code=status)
        if me is not None and me.resign:
            self.set_session(response, me.session)
        return response

    def check_csrf(self, me: Visit, token: str) -> None:
        if not auth.tokens_match(me.session.csrf, token):
            raise ConsoleError(
                403,
                "The form was refused",
                "The form had no valid security token (it expired, or it did not come from this console). "
                "Go back, reload the page and try again.",
            )

    def audit(self, subject: str, message: str, *, connection: str | None, actor: str | None) -> None:
        self.deps.ledger().note(subject, message, connection, actor=actor)
