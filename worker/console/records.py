"""The Finance console's parked and failed records (their timeline, dry run and retry) and each
period's reconciliation and evidence pack."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Form, Request
from starlette.responses import Response

from shared.item_level.streams import for_object_type
from shared.ledger.models import SyncRecord, UserRole
from worker.console import views
from worker.console.kit import ConsoleError, Kit, log


def register(console: FastAPI, kit: Kit) -> None:
    """Add the records' and the periods' routes to ``console``."""
    # -- parked and failed records ---------------------------------------------------------------

    @console.get("/records")
    def records(
        request: Request, stream: str | None = None, reason: str | None = None, connection: str | None = None
    ) -> Response:
        me = kit.visit(request)
        found = views.stuck_records(
            kit.deps.ledger(),
            kit.settings().connection,
            connection=connection or None,
            stream=stream or None,
            reason=reason or None,
        )
        return kit.render(request, "records.html", {"list": found}, me=me)

    def find_record(connection: str, stream: str, zuora_id: str) -> SyncRecord:
        object_type = views.stream_object_type(stream)
        record = kit.deps.ledger().get_record(connection, object_type, zuora_id) if object_type else None
        if record is None:
            raise ConsoleError(
                404,
                "No such record",
                f"The ledger has no {stream} record {zuora_id} on connection {connection}.",
            )
        return record

    def record_context(connection: str, stream: str, record: SyncRecord) -> dict[str, Any]:
        ledger = kit.deps.ledger()
        preview, preview_error = None, None
        try:
            preview = kit.deps.preview(connection, record)
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
        me = kit.visit(request)
        record = find_record(connection, stream, zuora_id)
        return kit.render(
            request, "record.html", {**record_context(connection, stream, record), "result": None}, me=me
        )

    @console.post("/records/{connection}/{stream}/{zuora_id}/retry")
    def retry(
        request: Request, connection: str, stream: str, zuora_id: str, csrf_token: str = Form("")
    ) -> Response:
        me = kit.visit(request, UserRole.PREPARER)
        kit.check_csrf(me, csrf_token)
        record = find_record(connection, stream, zuora_id)
        reason = f"retried in the Finance console by {me.name}"
        kit.audit(
            record.subject, f"console: retry requested by {me.name}", connection=connection, actor=me.name
        )
        try:
            result = kit.deps.retry(connection, record, reason)
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
        kit.audit(
            record.subject,
            f"console: retry by {me.name}: {outcome['action']} ({outcome['before']} -> {outcome['after']})",
            connection=connection,
            actor=me.name,
        )
        fresh = kit.deps.ledger().get_record(connection, record.object_type, record.zuora_id) or record
        return kit.render(
            request, "record.html", {**record_context(connection, stream, fresh), "result": outcome}, me=me
        )

    # -- periods: reconciliation and evidence ----------------------------------------------------

    @console.get("/periods/{connection}/{period_name}")
    def period(request: Request, connection: str, period_name: str) -> Response:
        me = kit.visit(request)
        found = views.reconciliation(kit.deps.ledger(), connection, period_name)
        return kit.render(request, "period.html", {"rec": found, "matches": views.matches}, me=me)

    @console.get("/periods/{connection}/{period_name}/evidence.zip")
    def evidence(request: Request, connection: str, period_name: str) -> Response:
        me = kit.visit(request)
        ledger = kit.deps.ledger()
        try:
            pack = kit.deps.evidence(ledger, kit.settings(), connection, period_name, generated_by=me.name)
        except ValueError as exc:
            raise ConsoleError(404, "No evidence for this period", str(exc)) from None
        kit.audit(
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
            kit.set_session(response, me.session)
        return response
