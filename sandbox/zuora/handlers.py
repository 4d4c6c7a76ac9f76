"""Handlers: parse a request into backend arguments, render the backend's answer (moto ``responses``).

Each handler is ``(backend, call) -> Reply``; it holds no state and no rules. Errors are raised by
the backend (or by parsing here) as ``errors.SandboxError`` and rendered by the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .backend import ZuoraBackend
from .backend.journal_runs import JE_DEFAULT_PAGE_SIZE
from .backend.periods import PERIOD_DEFAULT_PAGE_SIZE
from .errors import ActionFault, OAuthError, Version, ZuoraError
from .objectquery import parse_key_query, parse_query
from .paging import ZOQL_MAX_BATCH, page_url
from .schema import ENDPOINTS


@dataclass
class Call:
    """One parsed request as handlers see it."""

    method: str
    path: str
    template: str
    path_params: dict[str, str]
    query: list[tuple[str, str]]
    headers: Mapping[str, str]  # case-insensitive (Starlette Headers)
    body: bytes
    base_url: str
    version: Version

    def json(self) -> Any:
        """The JSON body (None when empty); malformed JSON is category 90."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ZuoraError(90, f"Malformed JSON: {exc}") from exc

    def param(self, name: str) -> str | None:
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else None

    def int_param(self, name: str, default: int) -> int:
        raw = self.param(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ZuoraError(20, f"{name} must be an integer, got {raw!r}") from exc


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


# -- OAuth --------------------------------------------------------------------------------------


def create_token(backend: ZuoraBackend, call: Call) -> Reply:
    content_type = call.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
    if "authorization" in call.headers:
        # Section 1.1: the token request must not carry Authorization (a client bug to surface).
        raise OAuthError(400, "invalid_request", "Do not send an Authorization header to /oauth/token")
    form = dict(parse_qsl(call.body.decode("utf-8", "replace"), keep_blank_values=True))
    return Reply(
        backend.issue_token(form.get("client_id"), form.get("client_secret"), form.get("grant_type"))
    )


# -- Actions (sections 5 and 10) -----------------------------------------------------------------


def _batch_size(body: dict[str, Any]) -> int:
    conf = body.get("conf") or {}
    size = conf.get("batchSize", ZOQL_MAX_BATCH) if isinstance(conf, dict) else ZOQL_MAX_BATCH
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ActionFault("INVALID_VALUE", "conf.batchSize must be a positive integer")
    return min(size, ZOQL_MAX_BATCH)  # > 2000 clamps to 2000


def _action_body(call: Call) -> dict[str, Any]:
    body = call.json()
    if not isinstance(body, dict):
        raise ActionFault("INVALID_VALUE", "the request body must be a JSON object")
    return body


def action_query(backend: ZuoraBackend, call: Call) -> Reply:
    body = _action_body(call)
    wsdl = call.headers.get("x-zuora-wsdl-version")
    try:
        wsdl_version = int(float(wsdl)) if wsdl else backend.config.wsdl_version
    except ValueError:
        raise ActionFault("INVALID_VERSION", f"invalid X-Zuora-WSDL-Version {wsdl!r}") from None
    return Reply(backend.zoql_query(body.get("queryString"), _batch_size(body), wsdl_version))


def action_query_more(backend: ZuoraBackend, call: Call) -> Reply:
    body = _action_body(call)
    return Reply(backend.zoql_query_more(body.get("queryLocator"), _batch_size(body)))


def action_update(backend: ZuoraBackend, call: Call) -> Reply:
    body = _action_body(call)
    reject = (call.param("rejectUnknownFields") or "false").lower() == "true"
    return Reply(backend.action_update(body.get("type"), body.get("objects"), reject_unknown=reject))


# -- accounting codes -----------------------------------------------------------------------------


def list_accounting_codes(backend: ZuoraBackend, call: Call) -> Reply:
    return _v1_list(call, "accountingCodes", backend.list_accounting_codes)


# -- accounting periods (section 6) ---------------------------------------------------------------


def list_periods(backend: ZuoraBackend, call: Call) -> Reply:
    return _v1_list(call, "accountingPeriods", backend.list_periods)


def _v1_list(
    call: Call,
    key: str,
    read: Callable[[int, int], tuple[list[dict[str, Any]], bool]],
    *,
    default_size: int = PERIOD_DEFAULT_PAGE_SIZE,
) -> Reply:
    """A v1 list page (``page``/``pageSize``; ``nextPage`` a URL when more follow)."""
    page = call.int_param("page", 1)
    page_size = call.int_param("pageSize", default_size)
    rows, more = read(page, page_size)
    body: dict[str, Any] = {key: rows}
    if more:
        body["nextPage"] = page_url(call.base_url, call.path, page + 1, page_size)
    body["success"] = True
    return Reply(body)


def get_period(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.get_period(call.path_params["ap_id"]))


def run_trial_balance(backend: ZuoraBackend, call: Call) -> Reply:
    backend.run_trial_balance(call.path_params["ap_id"])
    return Reply({"success": True})


def pending_close(backend: ZuoraBackend, call: Call) -> Reply:
    backend.pending_close(call.path_params["ap_id"])
    return Reply({"success": True})


def close_period(backend: ZuoraBackend, call: Call) -> Reply:
    backend.close_period(call.path_params["ap_id"])
    return Reply({"success": True})


def reopen_period(backend: ZuoraBackend, call: Call) -> Reply:
    backend.reopen_period(call.path_params["ap_id"])
    return Reply({"success": True})


# -- journal runs (section 7) ---------------------------------------------------------------------


def create_journal_run(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.create_journal_run(call.json()))


def get_journal_run(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.get_journal_run(call.path_params["jr_number"]))


def cancel_journal_run(backend: ZuoraBackend, call: Call) -> Reply:
    backend.cancel_journal_run(call.path_params["jr_number"])
    return Reply({"success": True})


def delete_journal_run(backend: ZuoraBackend, call: Call) -> Reply:
    backend.delete_journal_run(call.path_params["jr_number"])
    return Reply({"success": True})


# -- summary journal entries (section 8) ----------------------------------------------------------


def list_journal_entries(backend: ZuoraBackend, call: Call) -> Reply:
    number = call.path_params["jr_number"]
    return _v1_list(
        call,
        "journalEntries",
        lambda page, size: backend.list_journal_entries(number, page, size),
        default_size=JE_DEFAULT_PAGE_SIZE,
    )


def get_journal_entry(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.get_journal_entry(call.path_params["je_number"]))


def update_journal_entry_basic(backend: ZuoraBackend, call: Call) -> Reply:
    backend.update_journal_entry_basic(call.path_params["je_number"], call.json())
    return Reply({"success": True})


def create_journal_entry(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.create_journal_entry(call.json()))


def cancel_journal_entry(backend: ZuoraBackend, call: Call) -> Reply:
    backend.cancel_journal_entry(call.path_params["je_number"])
    return Reply({"success": True})


def delete_journal_entry(backend: ZuoraBackend, call: Call) -> Reply:
    backend.delete_journal_entry(call.path_params["je_number"])
    return Reply({"success": True})


# -- Object Query (section 9) ---------------------------------------------------------------------


def object_query_list(path: str) -> Callable[[ZuoraBackend, Call], Reply]:
    endpoint = ENDPOINTS[path]

    def handler(backend: ZuoraBackend, call: Call) -> Reply:
        query = parse_query(endpoint, call.query, backend.zone, backend.config.object_query_max_page_size)
        data, cursor = backend.object_query(path, query)
        body: dict[str, Any] = {}
        if cursor is not None:
            body["nextPage"] = cursor  # absent on the last page (section 9.3)
        body["data"] = data
        return Reply(body)

    handler.__name__ = f"query_{path.replace('-', '_')}"
    return handler


def object_query_key(path: str) -> Callable[[ZuoraBackend, Call], Reply]:
    endpoint = ENDPOINTS[path]

    def handler(backend: ZuoraBackend, call: Call) -> Reply:
        query = parse_key_query(endpoint, call.query, backend.config.object_query_max_page_size)
        return Reply(backend.object_query_by_key(path, call.path_params["key"], query))

    handler.__name__ = f"query_{path.replace('-', '_')}_by_key"
    return handler


# -- transferredToAccounting REST writes (section 10.2) -------------------------------------------


def update_invoice(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_invoice(call.path_params["key"], call.json()))


def update_credit_memo(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_memo("CreditMemo", call.path_params["key"], call.json()))


def update_debit_memo(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_memo("DebitMemo", call.path_params["key"], call.json()))


def update_credit_memos(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_memos("CreditMemo", call.json()))


def update_debit_memos(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_memos("DebitMemo", call.json()))


def update_debit_memo_due_dates(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_debit_memo_due_dates(call.json()))


def update_payment(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_payment_or_refund("Payment", call.path_params["payment_id"], call.json()))


def update_refund(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.update_payment_or_refund("Refund", call.path_params["refund_id"], call.json()))


# -- corrections (Invoice Settlement) -------------------------------------------------------------


def reverse_invoice(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.reverse_invoice(call.path_params["key"], call.json()))


def write_off_invoice(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.write_off_invoice(call.path_params["key"], call.json()))


def reverse_credit_memo(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.reverse_credit_memo(call.path_params["key"], call.json()))


def apply_credit_memo(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.apply_credit_memo(call.path_params["key"], call.json()))


def unapply_credit_memo(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.unapply_credit_memo(call.path_params["key"], call.json()))


def apply_payment(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.apply_payment(call.path_params["payment_id"], call.json()))


def unapply_payment(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.unapply_payment(call.path_params["payment_id"], call.json()))


def refund_payment(backend: ZuoraBackend, call: Call) -> Reply:
    return Reply(backend.refund_payment(call.path_params["payment_id"], call.json()))
