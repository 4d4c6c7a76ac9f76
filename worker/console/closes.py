"""The Finance console's close runs (their steps live, their entries, the approval form) and the
manual journal entries waiting for approval."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Form, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from shared.close.step_lines import step_lines
from shared.ledger.errors import RecordNotFound
from shared.ledger.models import UserRole
from worker.console import views
from worker.console.kit import PREFIX, ConsoleError, Kit, Visit, log


def register(console: FastAPI, kit: Kit) -> None:
    """Add the close runs' and the manual journal entries' routes to ``console``."""
    # -- close runs ------------------------------------------------------------------------------

    @console.get("/closes")
    def closes(request: Request, connection: str | None = None) -> Response:
        me = kit.visit(request)
        ledger = kit.deps.ledger()
        runs = views.close_runs(ledger, connection or None)
        return kit.render(
            request,
            "closes.html",
            {
                "runs": runs,
                "connection": connection or "",
                "connections": views.connections(ledger, kit.settings().connection),
            },
            me=me,
        )

    def close_context(run_id: int, me: Visit) -> dict[str, Any]:
        ledger = kit.deps.ledger()
        try:
            run = ledger.get_close_run(run_id)
        except RecordNotFound:
            raise ConsoleError(404, "No such close run", f"There is no close run {run_id}.") from None
        approval = None
        if run.status == "awaiting_approval":
            approval = kit.deps.approval_view(ledger, run_id)
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
        me = kit.visit(request)
        return kit.render(request, "close_run.html", {**close_context(run_id, me), "error": None}, me=me)

    @console.get("/api/closes/{run_id}")
    def close_run_json(request: Request, run_id: int) -> Response:
        me = kit.visit(request)
        ledger = kit.deps.ledger()
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
            kit.set_session(response, me.session)
        return response

    def decide(request: Request, run_id: int, csrf_token: str, comment: str, *, approve: bool) -> Response:
        me = kit.visit(request, UserRole.APPROVER)
        kit.check_csrf(me, csrf_token)
        ledger = kit.deps.ledger()
        word = "approved" if approve else "rejected"
        try:
            run = ledger.get_close_run(run_id)
        except RecordNotFound:
            raise ConsoleError(404, "No such close run", f"There is no close run {run_id}.") from None
        try:
            kit.deps.decide(ledger, run_id, user=me.name, approve=approve, comment=comment.strip())
        except kit.deps.refused() as exc:
            kit.audit(
                f"close:{run_id}",
                f"console: {me.name} could not have the close {word}: {exc}",
                connection=run.connection,
                actor=me.name,
            )
            context = close_context(run_id, me)
            return kit.render(
                request,
                "close_run.html",
                {**context, "error": str(exc), "comment": comment},
                me=me,
                status=409,
            )
        kit.audit(
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
        ledger = kit.deps.ledger()
        names = views.connections(ledger, kit.settings().connection)
        name = connection or (names[0] if names else kit.settings().connection)
        return kit.render(
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
        me = kit.visit(request)
        return requests_page(request, me, connection, error=None, done=None, status=200)

    @console.post("/journal-requests/{request_id}/decide")
    def decide_request(
        request: Request,
        request_id: int,
        csrf_token: str = Form(""),
        comment: str = Form(""),
        decision: str = Form(""),
    ) -> Response:
        me = kit.visit(request, UserRole.APPROVER)
        kit.check_csrf(me, csrf_token)
        if decision not in ("approve", "reject"):
            raise ConsoleError(422, "Not understood", "Choose approve or reject.")
        ledger = kit.deps.ledger()
        try:
            row = ledger.get_journal_request(request_id)
        except RecordNotFound:
            raise ConsoleError(
                404, "No such request", f"There is no journal entry request {request_id}."
            ) from None
        try:
            done = kit.deps.decide_request(
                ledger, request_id, user=me.name, approve=decision == "approve", comment=comment.strip()
            )
        except kit.deps.refused() as exc:
            return requests_page(request, me, row.connection, error=str(exc), done=None, status=409)
        kit.audit(
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
