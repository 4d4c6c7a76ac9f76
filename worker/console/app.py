"""The Finance console's routes (mounted at ``/console`` of the web process by ``worker/web.py``).

Server-rendered Jinja2 pages, a small stylesheet and a few lines of script that poll the JSON
endpoints to keep the figures current. Every route but the sign-in form and the static files needs
a signed-in user, and each action a role (:class:`~shared.ledger.models.UserRole`): viewers read
everything, preparers also retry records, approvers also decide closes, admins do everything.
Every action is written to the audit trail with the user as ``actor``. Without
``LEDGERBRIDGE_CONSOLE_SECRET`` every route answers 503 with a page saying to set it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response

from shared.close.step_lines import step_lines
from shared.item_level.streams import for_object_type
from shared.ledger.errors import RecordNotFound
from shared.ledger.models import ConsoleUser, SyncRecord, UserRole
from shared.ledger.repo import Ledger
from shared.settings import Settings
from worker.console import auth, views
from worker.console.charts import throughput_svg

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


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the console only (never another site)."""
    if not target:
        return PREFIX + "/"
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith(PREFIX)
        or target.startswith("//")
        or "\\" in target
    ):
        return PREFIX + "/"
    if target.rstrip("/") == PREFIX + "/login":
        return PREFIX + "/"
    return target


def create_console(deps: ConsoleDeps) -> FastAPI:
    """The console app, to mount at :data:`PREFIX`."""
    console = FastAPI(title="ledgerbridge Finance console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["prefix"] = PREFIX
    templates.env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    templates.env.filters["money"] = views.money
    console.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def settings() -> Settings:
        return deps.settings()

    def signer() -> auth.Signer:
        secret = settings().console_secret
        if secret is None or not secret.get_secret_value():
            raise ConsoleError(
                503,
                "The console is not configured",
                "Set LEDGERBRIDGE_CONSOLE_SECRET (a random string of at least 32 characters) for the web "
                "process and restart it; then add a user with `ledgerbridge user add NAME --role admin`.",
            )
        return auth.Signer(secret.get_secret_value())

    def idle() -> timedelta:
        return timedelta(minutes=settings().console_session_minutes)

    def secure() -> bool:
        return not settings().console_insecure_cookies

    def visit(request: Request, need: UserRole = UserRole.VIEWER) -> Visit:
        """The request's user, who must have at least ``need`` (:class:`SignInNeeded`, or a 403)."""
        sign = signer()
        ledger = deps.ledger()
        now = deps.clock().timestamp()
        session = sign.load(request.cookies.get(auth.SESSION_COOKIE), idle=idle(), now=now)
        user = auth.session_user(ledger, session) if session is not None else None
        header = settings().console_trusted_user_header
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

    def set_session(response: Response, session: auth.Session) -> None:
        response.set_cookie(
            auth.SESSION_COOKIE,
            signer().dump(session),
            max_age=int(idle().total_seconds()),
            path=PREFIX,
            secure=secure(),
            httponly=True,
            samesite="strict",
        )

    def set_login_cookie(response: Response, cookie: str) -> None:
        """The sign-in form's own CSRF cookie (the form has no session yet)."""
        response.set_cookie(
            auth.LOGIN_COOKIE,
            cookie,
            max_age=auth.LOGIN_FORM_SECONDS,
            path=PREFIX,
            secure=secure(),
            httponly=True,
            samesite="strict",
        )

    def render(
        request: Request, template: str, context: dict[str, Any], *, me: Visit | None, status: int = 200
    ) -> Response:
        values = {"me": me, "csrf": me.session.csrf if me else "", "roles": UserRole, **context}
        response = templates.TemplateResponse(request, template, values, status_code=status)
        if me is not None and me.resign:
            set_session(response, me.session)
        return response

    def check_csrf(me: Visit, token: str) -> None:
        if not auth.tokens_match(me.session.csrf, token):
            raise ConsoleError(
                403,
                "The form was refused",
                "The form had no valid security token (it expired, or it did not come from this console). "
                "Go back, reload the page and try again.",
            )

    def audit(subject: str, message: str, *, connection: str | None, actor: str | None) -> None:
        deps.ledger().note(subject, message, connection, actor=actor)

    # -- errors ----------------------------------------------------------------------------------

    @console.exception_handler(ConsoleError)
    async def console_error(request: Request, exc: ConsoleError) -> Response:
        if request.url.path.startswith(PREFIX + "/api/"):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        response = templates.TemplateResponse(
            request,
            "error.html",
            {"me": None, "csrf": "", "title": exc.title, "message": exc.message, "status": exc.status},
            status_code=exc.status,
        )
        return response

    @console.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
        if request.url.path.startswith(PREFIX + "/api/"):
            return JSONResponse({"error": "sign in first"}, status_code=401)
        if request.method != "GET":
            return templates.TemplateResponse(
                request,
                "error.html",
                {
                    "me": None,
                    "csrf": "",
                    "title": "Sign in first",
                    "message": "Your session has ended or you are not signed in; nothing was done.",
                    "status": 403,
                },
                status_code=403,
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)

    @console.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Not allowed here", 422: "The request was not understood"}
        message = "There is no such page in the console." if exc.status_code == 404 else str(exc.detail or "")
        return templates.TemplateResponse(
            request,
            "error.html",
            {
                "me": None,
                "csrf": "",
                "title": titles.get(exc.status_code, "Error"),
                "message": message,
                "status": exc.status_code,
            },
            status_code=exc.status_code,
        )

    @console.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        wrong = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors())
        message = f"The address or the form has a value the console does not understand ({wrong})."
        if request.url.path.startswith(PREFIX + "/api/"):
            return JSONResponse({"error": message}, status_code=422)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"me": None, "csrf": "", "title": "Not understood", "message": message, "status": 422},
            status_code=422,
        )

    @console.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("the console could not answer %s %s", request.method, request.url.path)
        return templates.TemplateResponse(
            request,
            "error.html",
            {
                "me": None,
                "csrf": "",
                "title": "Something went wrong",
                "message": "The console could not answer this request; the web process's log has the details.",
                "status": 500,
            },
            status_code=500,
        )

    @console.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # -- signing in and out ----------------------------------------------------------------------

    @console.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        sign = signer()
        cookie, token = sign.login_cookie()
        response = templates.TemplateResponse(
            request,
            "login.html",
            {"me": None, "csrf": token, "next": safe_next(next), "error": None, "username": ""},
        )
        set_login_cookie(response, cookie)
        return response

    @console.post("/login")
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        csrf_token: str = Form(""),
        next: str = Form(""),
    ) -> Response:
        sign = signer()
        if not auth.tokens_match(sign.login_token(request.cookies.get(auth.LOGIN_COOKIE)), csrf_token):
            raise ConsoleError(
                403,
                "The form was refused",
                "The sign-in form expired or did not come from this console. Reload it and try again.",
            )
        ledger = deps.ledger()
        name = username.strip()[:64]
        outcome = auth.sign_in(ledger, name, password, deps.clock())
        if outcome.user is None:
            known = ledger.get_user(name) is not None if name else False
            audit(
                "console:login",
                f"sign-in refused for {name!r}: {outcome.why}",
                connection=None,
                actor=name if known else None,
            )
            log.warning("console sign-in refused", extra={"user": name, "why": outcome.why})
            cookie, token = sign.login_cookie()
            response = templates.TemplateResponse(
                request,
                "login.html",
                {
                    "me": None,
                    "csrf": token,
                    "next": safe_next(next),
                    "error": "Wrong user name or password, or the user is locked or disabled.",
                    "username": name,
                },
                status_code=401,
            )
            set_login_cookie(response, cookie)
            return response
        session = auth.new_session(outcome.user.name, deps.clock().timestamp())
        audit("console:login", "signed in", connection=None, actor=outcome.user.name)
        log.info("console sign-in", extra={"user": outcome.user.name})
        done = RedirectResponse(safe_next(next), status_code=303)
        set_session(done, session)
        done.delete_cookie(auth.LOGIN_COOKIE, path=PREFIX, secure=secure(), httponly=True, samesite="strict")
        return done

    @console.post("/logout")
    def logout(request: Request, csrf_token: str = Form("")) -> Response:
        me = visit(request)
        check_csrf(me, csrf_token)
        deps.ledger().end_user_sessions(me.name, now=deps.clock())
        audit("console:login", "signed out", connection=None, actor=me.name)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(
            auth.SESSION_COOKIE, path=PREFIX, secure=secure(), httponly=True, samesite="strict"
        )
        return response

    # -- the overview ----------------------------------------------------------------------------

    @console.get("/")
    def overview(request: Request) -> Response:
        me = visit(request)
        ledger = deps.ledger()
        now = deps.clock()
        data = views.overview(ledger, settings().connection, now)
        charts = {
            c["name"]: throughput_svg(views.chart(ledger, c["name"], now), label=c["name"]) for c in data
        }
        return render(
            request, "overview.html", {"connections": data, "charts": charts, "now": views.when(now)}, me=me
        )

    @console.get("/api/overview")
    def overview_json(request: Request) -> Response:
        me = visit(request)
        now = deps.clock()
        data = views.overview(deps.ledger(), settings().connection, now)
        response = JSONResponse(
            {"at": views.when(now), "values": views.live_values(data), "connections": data}
        )
        if me.resign:
            set_session(response, me.session)
        return response

    # -- close runs ------------------------------------------------------------------------------

    @console.get("/closes")
    def closes(request: Request, connection: str | None = None) -> Response:
        me = visit(request)
        ledger = deps.ledger()
        runs = views.close_runs(ledger, connection or None)
        return render(
            request,
            "closes.html",
            {
                "runs": runs,
                "connection": connection or "",
                "connections": views.connections(ledger, settings().connection),
            },
            me=me,
        )

    def close_context(run_id: int, me: Visit) -> dict[str, Any]:
        ledger = deps.ledger()
        try:
            run = ledger.get_close_run(run_id)
        except RecordNotFound:
            raise ConsoleError(404, "No such close run", f"There is no close run {run_id}.") from None
        approval = None
        if run.status == "awaiting_approval":
            approval = deps.approval_view(ledger, run_id)
        reconcile = dict(run.details.get("reconcile") or {})
        return {
            "run": views.run_summary(run),
            "steps": step_lines(ledger, run),
            "entries": views.close_entries(ledger, run),
            "approval": approval,
            "can_decide": me.can(UserRole.APPROVER),
            "started_by_me": approval is not None and approval.started_by == me.name,
            "differences": list(reconcile.get("differences") or []),
            "timeline": [views.exchange_line(e) for e in ledger.timeline(f"close:{run_id}", limit=500)],
        }

    @console.get("/closes/{run_id}")
    def close_run(request: Request, run_id: int) -> Response:
        me = visit(request)
        return render(request, "close_run.html", {**close_context(run_id, me), "error": None}, me=me)

    @console.get("/api/closes/{run_id}")
    def close_run_json(request: Request, run_id: int) -> Response:
        me = visit(request)
        ledger = deps.ledger()
        try:
            run = ledger.get_close_run(run_id)
        except RecordNotFound:
            raise ConsoleError(404, "No such close run", f"There is no close run {run_id}.") from None
        steps = step_lines(ledger, run)
        values = {"status": views.status_words(run.status), "step": run.step, "error": run.error or ""}
        for line in steps:
            values[f"step.{line.name}.state"] = line.state_words
            values[f"step.{line.name}.detail"] = line.detail
        response = JSONResponse(
            {"run": views.run_summary(run), "steps": [s.as_dict() for s in steps], "values": values}
        )
        if me.resign:
            set_session(response, me.session)
        return response

    def decide(request: Request, run_id: int, csrf_token: str, comment: str, *, approve: bool) -> Response:
        me = visit(request, UserRole.APPROVER)
        check_csrf(me, csrf_token)
        ledger = deps.ledger()
        word = "approved" if approve else "rejected"
        try:
            run = ledger.get_close_run(run_id)
        except RecordNotFound:
            raise ConsoleError(404, "No such close run", f"There is no close run {run_id}.") from None
        try:
            deps.decide(ledger, run_id, user=me.name, approve=approve, comment=comment.strip())
        except deps.refused() as exc:
            audit(
                f"close:{run_id}",
                f"console: {me.name} could not have the close {word}: {exc}",
                connection=run.connection,
                actor=me.name,
            )
            context = close_context(run_id, me)
            return render(
                request,
                "close_run.html",
                {**context, "error": str(exc), "comment": comment},
                me=me,
                status=409,
            )
        audit(
            f"close:{run_id}", f"console: close {word} by {me.name}", connection=run.connection, actor=me.name
        )
        log.info("close %s in the console", word, extra={"close_run": run_id, "user": me.name})
        return RedirectResponse(f"{PREFIX}/closes/{run_id}", status_code=303)

    @console.post("/closes/{run_id}/approve")
    def approve(
        request: Request, run_id: int, csrf_token: str = Form(""), comment: str = Form("")
    ) -> Response:
        return decide(request, run_id, csrf_token, comment, approve=True)

    @console.post("/closes/{run_id}/reject")
    def reject(
        request: Request, run_id: int, csrf_token: str = Form(""), comment: str = Form("")
    ) -> Response:
        return decide(request, run_id, csrf_token, comment, approve=False)

    # -- manual journal entries waiting for approval (approval all) -----------------------------

    def requests_page(
        request: Request,
        me: Visit,
        connection: str | None,
        *,
        error: str | None,
        done: str | None,
        status: int,
    ) -> Response:
        ledger = deps.ledger()
        names = views.connections(ledger, settings().connection)
        name = connection or (names[0] if names else settings().connection)
        return render(
            request,
            "journal_requests.html",
            {
                "requests": ledger.list_journal_requests(name),
                "connection": name,
                "connections": names,
                "can_decide": me.can(UserRole.APPROVER),
                "error": error,
                "done": done,
            },
            me=me,
            status=status,
        )

    @console.get("/journal-requests")
    def journal_requests(request: Request, connection: str | None = None) -> Response:
        me = visit(request)
        return requests_page(request, me, connection, error=None, done=None, status=200)

    @console.post("/journal-requests/{request_id}/decide")
    def decide_request(
        request: Request,
        request_id: int,
        csrf_token: str = Form(""),
        comment: str = Form(""),
        decision: str = Form(""),
    ) -> Response:
        me = visit(request, UserRole.APPROVER)
        check_csrf(me, csrf_token)
        if decision not in ("approve", "reject"):
            raise ConsoleError(422, "Not understood", "Choose approve or reject.")
        ledger = deps.ledger()
        try:
            row = ledger.get_journal_request(request_id)
        except RecordNotFound:
            raise ConsoleError(
                404, "No such request", f"There is no journal entry request {request_id}."
            ) from None
        try:
            done = deps.decide_request(
                ledger, request_id, user=me.name, approve=decision == "approve", comment=comment.strip()
            )
        except deps.refused() as exc:
            return requests_page(request, me, row.connection, error=str(exc), done=None, status=409)
        audit(
            f"journal-request:{request_id}",
            f"console: {decision} by {me.name} ({done.status})",
            connection=row.connection,
            actor=me.name,
        )
        words = {
            "created": f"Request {request_id} was approved and created in Zuora as {done.zuora_number}.",
            "rejected": f"Request {request_id} was rejected.",
            "failed": f"Request {request_id} was approved but no longer passes its check: {done.error}",
        }
        return requests_page(
            request, me, row.connection, error=None, done=words.get(done.status, done.status), status=200
        )

    # -- parked and failed records ---------------------------------------------------------------

    @console.get("/records")
    def records(
        request: Request, stream: str | None = None, reason: str | None = None, connection: str | None = None
    ) -> Response:
        me = visit(request)
        found = views.stuck_records(
            deps.ledger(),
            settings().connection,
            connection=connection or None,
            stream=stream or None,
            reason=reason or None,
        )
        return render(request, "records.html", {"list": found}, me=me)

    def find_record(connection: str, stream: str, zuora_id: str) -> SyncRecord:
        object_type = views.stream_object_type(stream)
        record = deps.ledger().get_record(connection, object_type, zuora_id) if object_type else None
        if record is None:
            raise ConsoleError(
                404,
                "No such record",
                f"The ledger has no {stream} record {zuora_id} on connection {connection}.",
            )
        return record

    def record_context(connection: str, stream: str, record: SyncRecord) -> dict[str, Any]:
        ledger = deps.ledger()
        preview, preview_error = None, None
        try:
            preview = deps.preview(connection, record)
        except Exception as exc:  # the dry run talks to Zuora and the ERP: show why it failed
            log.warning(
                "replay dry run failed in the console", extra={"subject": record.subject, "error": str(exc)}
            )
            preview_error = f"{type(exc).__name__}: {exc}"
        item = for_object_type(record.object_type)
        return {
            "record": record,
            "stream": stream,
            "connection": connection,
            "state_words": views.STATE_WORDS.get(record.state, record.state),
            "timeline": [views.exchange_line(e) for e in ledger.timeline(record.subject, limit=500)],
            "preview": preview,
            "preview_error": preview_error,
            "retryable": record.state in ("parked", "failed") and item is not None,
        }

    @console.get("/records/{connection}/{stream}/{zuora_id}")
    def record_page(request: Request, connection: str, stream: str, zuora_id: str) -> Response:
        me = visit(request)
        record = find_record(connection, stream, zuora_id)
        return render(
            request, "record.html", {**record_context(connection, stream, record), "result": None}, me=me
        )

    @console.post("/records/{connection}/{stream}/{zuora_id}/retry")
    def retry(
        request: Request, connection: str, stream: str, zuora_id: str, csrf_token: str = Form("")
    ) -> Response:
        me = visit(request, UserRole.PREPARER)
        check_csrf(me, csrf_token)
        record = find_record(connection, stream, zuora_id)
        reason = f"retried in the Finance console by {me.name}"
        audit(record.subject, f"console: retry requested by {me.name}", connection=connection, actor=me.name)
        try:
            result = deps.retry(connection, record, reason)
            outcome = {
                "ok": bool(result.ok),
                "action": result.action,
                "before": result.before,
                "after": result.after,
                "detail": result.detail or "",
            }
        except Exception as exc:  # Zuora or the ERP unavailable, a configuration problem: say so
            log.warning("console retry failed", extra={"subject": record.subject, "error": str(exc)})
            outcome = {
                "ok": False,
                "action": "error",
                "before": record.state,
                "after": record.state,
                "detail": f"{type(exc).__name__}: {exc}",
            }
        audit(
            record.subject,
            f"console: retry by {me.name}: {outcome['action']} ({outcome['before']} -> {outcome['after']})",
            connection=connection,
            actor=me.name,
        )
        fresh = deps.ledger().get_record(connection, record.object_type, record.zuora_id) or record
        return render(
            request, "record.html", {**record_context(connection, stream, fresh), "result": outcome}, me=me
        )

    # -- periods: reconciliation and evidence ----------------------------------------------------

    @console.get("/periods/{connection}/{period_name}")
    def period(request: Request, connection: str, period_name: str) -> Response:
        me = visit(request)
        found = views.reconciliation(deps.ledger(), connection, period_name)
        return render(request, "period.html", {"rec": found, "matches": views.matches}, me=me)

    @console.get("/periods/{connection}/{period_name}/evidence.zip")
    def evidence(request: Request, connection: str, period_name: str) -> Response:
        me = visit(request)
        ledger = deps.ledger()
        try:
            pack = deps.evidence(ledger, settings(), connection, period_name, generated_by=me.name)
        except ValueError as exc:
            raise ConsoleError(404, "No evidence for this period", str(exc)) from None
        audit(
            f"period:{connection}:{period_name}",
            f"console: evidence pack of {period_name} downloaded by {me.name}",
            connection=connection,
            actor=me.name,
        )
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{connection}-{period_name}")
        response = Response(
            pack,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="evidence-{safe}.zip"'},
        )
        if me.resign:
            set_session(response, me.session)
        return response

    return console
