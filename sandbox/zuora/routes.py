"""The URL table of the sandbox (moto ``urls.py``): method, template, handler, API dialect, limit.

The route template (``/v1/journal-runs/{jr_number}``) is also the request-counter key, so
``GET /_sandbox/requests`` reports ``"GET /v1/journal-runs/{jr_number}": 3``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import handlers as h
from .backend import ZuoraBackend
from .errors import Api
from .schema import ENDPOINTS

Handler = Callable[[ZuoraBackend, h.Call], h.Reply]

DEFAULT_LIMIT = "Default"
OBJECT_QUERY_LIMIT = "Object Query"


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    api: Api
    limit_type: str | None = DEFAULT_LIMIT  # None: no concurrency limit (token endpoint)
    auth: bool = True

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"


def _v1(method: str, template: str, handler: Handler) -> Route:
    return Route(method, template, handler, Api.V1)


def _actions(template: str, handler: Handler) -> Route:
    return Route("POST", template, handler, Api.ACTIONS)


ROUTES: tuple[Route, ...] = (
    Route("POST", "/oauth/token", h.create_token, Api.OAUTH, limit_type=None, auth=False),
    _actions("/v1/action/query", h.action_query),
    _actions("/v1/action/queryMore", h.action_query_more),
    _actions("/v1/action/update", h.action_update),
    _v1("GET", "/v1/accounting-codes", h.list_accounting_codes),
    _v1("GET", "/v1/accounting-periods", h.list_periods),
    _v1("GET", "/v1/accounting-periods/{ap_id}", h.get_period),
    _v1("PUT", "/v1/accounting-periods/{ap_id}/run-trial-balance", h.run_trial_balance),
    _v1("PUT", "/v1/accounting-periods/{ap_id}/pending-close", h.pending_close),
    _v1("PUT", "/v1/accounting-periods/{ap_id}/close", h.close_period),
    _v1("PUT", "/v1/accounting-periods/{ap_id}/reopen", h.reopen_period),
    _v1("POST", "/v1/journal-runs", h.create_journal_run),
    _v1("GET", "/v1/journal-runs/{jr_number}", h.get_journal_run),
    _v1("PUT", "/v1/journal-runs/{jr_number}/cancel", h.cancel_journal_run),
    _v1("DELETE", "/v1/journal-runs/{jr_number}", h.delete_journal_run),
    _v1("GET", "/v1/journal-entries/journal-runs/{jr_number}", h.list_journal_entries),
    _v1("POST", "/v1/journal-entries", h.create_journal_entry),
    _v1("GET", "/v1/journal-entries/{je_number}", h.get_journal_entry),
    _v1("PUT", "/v1/journal-entries/{je_number}/basic-information", h.update_journal_entry_basic),
    _v1("PUT", "/v1/journal-entries/{je_number}/cancel", h.cancel_journal_entry),
    _v1("DELETE", "/v1/journal-entries/{je_number}", h.delete_journal_entry),
    _v1("PUT", "/v1/invoices/{key}", h.update_invoice),
    _v1("PUT", "/v1/credit-memos/bulk", h.update_credit_memos),
    _v1("PUT", "/v1/debit-memos/bulk", h.update_debit_memos),
    _v1("PUT", "/v1/debit-memos", h.update_debit_memo_due_dates),
    _v1("PUT", "/v1/credit-memos/{key}", h.update_credit_memo),
    _v1("PUT", "/v1/debit-memos/{key}", h.update_debit_memo),
    _v1("PUT", "/v1/payments/{payment_id}", h.update_payment),
    _v1("PUT", "/v1/refunds/{refund_id}", h.update_refund),
    _v1("PUT", "/v1/invoices/{key}/reverse", h.reverse_invoice),
    _v1("PUT", "/v1/invoices/{key}/write-off", h.write_off_invoice),
    _v1("PUT", "/v1/credit-memos/{key}/reverse", h.reverse_credit_memo),
    _v1("PUT", "/v1/credit-memos/{key}/apply", h.apply_credit_memo),
    _v1("PUT", "/v1/credit-memos/{key}/unapply", h.unapply_credit_memo),
    _v1("PUT", "/v1/payments/{payment_id}/apply", h.apply_payment),
    _v1("PUT", "/v1/payments/{payment_id}/unapply", h.unapply_payment),
    _v1("POST", "/v1/payments/{payment_id}/refunds", h.refund_payment),
    *(
        route
        for path in ENDPOINTS
        for route in (
            Route(
                "GET",
                f"/object-query/{path}",
                h.object_query_list(path),
                Api.OBJECT_QUERY,
                OBJECT_QUERY_LIMIT,
            ),
            Route(
                "GET",
                f"/object-query/{path}/{{key}}",
                h.object_query_key(path),
                Api.OBJECT_QUERY,
                OBJECT_QUERY_LIMIT,
            ),
        )
    ),
)
