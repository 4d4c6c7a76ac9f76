"""The Finance console's routes (mounted at ``/console`` of the web process by ``worker/web.py``).

Server-rendered Jinja2 pages, a small stylesheet and a few lines of script that poll the JSON
endpoints to keep the figures current. Every route but the sign-in form and the static files needs
a signed-in user, and each action a role (:class:`~shared.ledger.models.UserRole`): viewers read
everything, preparers also retry records, approvers also decide closes, admins do everything.
Every action is written to the audit trail with the user as ``actor``. Without
``LEDGERBRIDGE_CONSOLE_SECRET`` every route answers 503 with a page saying to set it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response

from worker.console import auth, closes, records, views
from worker.console.charts import throughput_svg
from worker.console.kit import (
    HERE,
    PREFIX,
    SECURITY_HEADERS,
    ConsoleDeps,
    ConsoleError,
    Kit,
    SignInNeeded,
    Visit,
    log,
)

__all__ = ["PREFIX", "ConsoleDeps", "ConsoleError", "Visit", "create_console", "safe_next"]


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

    kit = Kit(deps, templates)

    # -- errors ----------------------------------------------------------------------------------

    @console.exception_handler(ConsoleError)
    async def console_error(request: Request, exc: ConsoleError) -> Response:
        if request.url.path.startswith(PREFIX + "/api/"):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        response = kit.templates.TemplateResponse(
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
            return kit.templates.TemplateResponse(
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
        return kit.templates.TemplateResponse(
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
        return kit.templates.TemplateResponse(
            request,
            "error.html",
            {"me": None, "csrf": "", "title": "Not understood", "message": message, "status": 422},
            status_code=422,
        )

    @console.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("the console could not answer %s %s", request.method, request.url.path)
        return kit.templates.TemplateResponse(
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
        sign = kit.signer()
        cookie, token = sign.login_cookie()
        response = kit.templates.TemplateResponse(
            request,
            "login.html",
            {"me": None, "csrf": token, "next": safe_next(next), "error": None, "username": ""},
        )
        kit.set_login_cookie(response, cookie)
        return response

    @console.post("/login")
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        csrf_token: str = Form(""),
        next: str = Form(""),
    ) -> Response:
        sign = kit.signer()
        if not auth.tokens_match(sign.login_token(request.cookies.get(auth.LOGIN_COOKIE)), csrf_token):
            raise ConsoleError(
                403,
                "The form was refused",
                "The sign-in form expired or did not come from this console. Reload it and try again.",
            )
        ledger = kit.deps.ledger()
        name = username.strip()[:64]
        outcome = auth.sign_in(ledger, name, password, kit.deps.clock())
        if outcome.user is None:
            known = ledger.get_user(name) is not None if name else False
            kit.audit(
                "console:login",
                f"sign-in refused for {name!r}: {outcome.why}",
                connection=None,
                actor=name if known else None,
            )
            log.warning("console sign-in refused", extra={"user": name, "why": outcome.why})
            cookie, token = sign.login_cookie()
            response = kit.templates.TemplateResponse(
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
            kit.set_login_cookie(response, cookie)
            return response
        session = auth.new_session(outcome.user.name, kit.deps.clock().timestamp())
        kit.audit("console:login", "signed in", connection=None, actor=outcome.user.name)
        log.info("console sign-in", extra={"user": outcome.user.name})
        done = RedirectResponse(safe_next(next), status_code=303)
        kit.set_session(done, session)
        done.delete_cookie(
            auth.LOGIN_COOKIE, path=PREFIX, secure=kit.secure(), httponly=True, samesite="strict"
        )
        return done

    @console.post("/logout")
    def logout(request: Request, csrf_token: str = Form("")) -> Response:
        me = kit.visit(request)
        kit.check_csrf(me, csrf_token)
        kit.deps.ledger().end_user_sessions(me.name, now=kit.deps.clock())
        kit.audit("console:login", "signed out", connection=None, actor=me.name)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(
            auth.SESSION_COOKIE, path=PREFIX, secure=kit.secure(), httponly=True, samesite="strict"
        )
        return response

    # -- the overview ----------------------------------------------------------------------------

    @console.get("/")
    def overview(request: Request) -> Response:
        me = kit.visit(request)
        ledger = kit.deps.ledger()
        now = kit.deps.clock()
        data = views.overview(ledger, kit.settings().connection, now)
        charts = {
            c["name"]: throughput_svg(views.chart(ledger, c["name"], now), label=c["name"]) for c in data
        }
        return kit.render(
            request, "overview.html", {"connections": data, "charts": charts, "now": views.when(now)}, me=me
        )

    @console.get("/api/overview")
    def overview_json(request: Request) -> Response:
        me = kit.visit(request)
        now = kit.deps.clock()
        data = views.overview(kit.deps.ledger(), kit.settings().connection, now)
        response = JSONResponse(
            {"at": views.when(now), "values": views.live_values(data), "connections": data}
        )
        if me.resign:
            kit.set_session(response, me.session)
        return response

    closes.register(console, kit)
    records.register(console, kit)
    return console
