"""REST writes of ``transferredToAccounting`` (section 10.2) and the chart of accounting codes.

``PUT /v1/invoices/{key}``, ``/v1/credit-memos/{key}``, ``/v1/debit-memos/{key}``, the memo bulk
updates, ``PUT /v1/debit-memos`` (due dates), ``PUT /v1/payments/{id}`` and ``/v1/refunds/{id}``
(nested ``financeInformation``); ``GET /v1/accounting-codes``. Every write bumps ``UpdatedDate``
(``TenantState._touch``), so a marked record comes back in the next high-water-mark poll.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from sandbox.zuora.catalog import ACCOUNTING_CODES
from sandbox.zuora.errors import (
    RESOURCE_ACCOUNTING_CODE,
    RESOURCE_CREDIT_MEMO,
    RESOURCE_DEBIT_MEMO,
    RESOURCE_INVOICE,
    RESOURCE_PAYMENT,
    RESOURCE_REFUND,
    ZuoraError,
    invalid,
    not_found,
    rule,
)
from sandbox.zuora.formats import number_json
from sandbox.zuora.paging import page_slice
from sandbox.zuora.schema import OBJECTS
from sandbox.zuora.seed import SANDBOX_USER

from .state import TRANSFERRED_ACTIONS, TRANSFERRED_REST, TenantState, object_body

MAX_BULK_MEMOS = 50  # PUT /v1/credit-memos/bulk, /v1/debit-memos/bulk


class Transfers(TenantState):
    """The transferredToAccounting writes and the accounting-code list."""

    def list_accounting_codes(self, page: int, page_size: int) -> tuple[list[dict[str, Any]], bool]:
        """``GET /v1/accounting-codes``: the chart of accounting codes (zuora-sdk
        ``AccountingCodeItemResponse``), by name."""
        limit = self.config.list_max_page_size
        if page < 1 or not 1 <= page_size <= limit:
            raise invalid(f"page must be >= 1 and pageSize 1..{limit}", resource=RESOURCE_ACCOUNTING_CODE)
        with self._lock:
            self._advance()
        codes = sorted(ACCOUNTING_CODES.values(), key=lambda c: c.name)
        chosen, more = page_slice(codes, page, page_size)
        return [
            {
                "id": code.id,
                "name": code.name,
                "type": code.type,
                "category": code.category,
                "status": "Active",
                "glAccountNumber": code.gl_account_number,
                "glAccountName": code.gl_account_name,
                "notes": "",
                "createdBy": SANDBOX_USER,
                "createdOn": "2023-01-01 00:00:00",
                "updatedBy": SANDBOX_USER,
                "updatedOn": "2023-01-01 00:00:00",
            }
            for code in chosen
        ], more

    def update_invoice(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/invoices/{key}``: transferredToAccounting (Actions values) on a Posted invoice."""
        body = object_body(body)
        with self._lock:
            self._advance()
            row = self._row("Invoice", key, RESOURCE_INVOICE)
            changes = {}
            if "transferredToAccounting" in body:
                value = body["transferredToAccounting"]
                if value not in TRANSFERRED_ACTIONS:
                    raise invalid(
                        f"transferredToAccounting must be one of {', '.join(TRANSFERRED_ACTIONS)}",
                        resource=RESOURCE_INVOICE,
                    )
                if row["Status"] != "Posted":
                    raise rule(
                        "transferredToAccounting can only be updated on Posted invoices",
                        resource=RESOURCE_INVOICE,
                    )
                changes["TransferredToAccounting"] = value
            self._touch(OBJECTS["Invoice"], row, changes)
            return {
                "id": row["Id"],
                "invoiceNumber": row["InvoiceNumber"],
                "accountId": row["AccountId"],
                "amount": number_json(row["Amount"]),
                "balance": number_json(row["Balance"]),
                "status": row["Status"],
                "transferredToAccounting": row["TransferredToAccounting"],
                "success": True,
            }

    def update_memo(self, kind: str, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/credit-memos/{key}`` or ``/v1/debit-memos/{key}``: top-level transferredToAccounting."""
        resource = RESOURCE_CREDIT_MEMO if kind == "CreditMemo" else RESOURCE_DEBIT_MEMO
        body = object_body(body)
        with self._lock:
            self._advance()
            row = self._row(kind, key, resource)
            changes: dict[str, Any] = {}
            if "transferredToAccounting" in body:
                value = body["transferredToAccounting"]
                if value not in TRANSFERRED_REST:
                    raise invalid(
                        f"transferredToAccounting must be one of {', '.join(TRANSFERRED_REST)}",
                        resource=resource,
                    )
                changes["TransferredToAccounting"] = value
            for field_name, api_name in (("comment", "Comments"), ("reasonCode", "ReasonCode")):
                if isinstance(body.get(field_name), str):
                    changes[api_name] = body[field_name]
            self._touch(OBJECTS[kind], row, changes)
            return self._memo_v1(kind, row)

    def update_memos(self, kind: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/credit-memos/bulk`` or ``/v1/debit-memos/bulk`` (``{"memos": [{"id", ...}]}``): up
        to 50 memos, each updated on its own (one failing does not stop the others); one result per
        memo, in order (``BulkCreditMemosResponse``/``BulkDebitMemosResponse``)."""
        resource = RESOURCE_CREDIT_MEMO if kind == "CreditMemo" else RESOURCE_DEBIT_MEMO
        body = object_body(body)
        items = body.get("memos")
        if not isinstance(items, list) or not items:
            raise invalid("memos must be a non-empty array", resource=resource)
        if len(items) > MAX_BULK_MEMOS:
            raise invalid(f"at most {MAX_BULK_MEMOS} memos can be updated in one request", resource=resource)
        results: list[dict[str, Any]] = []
        for item in items:
            key = item.get("id") if isinstance(item, dict) else None
            try:
                if not isinstance(key, str) or not key:
                    raise invalid("id is required for each memo", resource=resource)
                changes = {k: v for k, v in item.items() if k != "id"}
                results.append({**self.update_memo(kind, key, changes), "success": True})
            except ZuoraError as exc:
                results.append(
                    {
                        "id": key,
                        "success": False,
                        "processId": secrets.token_hex(8).upper(),
                        "reasons": [{"code": str(exc.code), "message": exc.message}],
                    }
                )
        return {"memos": results, "success": True}

    def update_debit_memo_due_dates(self, body: Any) -> dict[str, Any]:
        """``PUT /v1/debit-memos`` is Zuora's "update due dates of debit memos"
        (``{"debitMemos": [{"id" | "memoKey", "dueDate"}]}``): answered ``{"success": true}`` without a
        per-memo list. Fields other than those are not part of the operation and change nothing."""
        body = object_body(body)
        items = body.get("debitMemos")
        if not isinstance(items, list) or not items:
            raise invalid("debitMemos must be a non-empty array", resource=RESOURCE_DEBIT_MEMO)
        with self._lock:
            self._advance()
            for item in items:
                key = item.get("id") or item.get("memoKey") if isinstance(item, dict) else None
                if not isinstance(key, str) or not key:
                    raise invalid("each debit memo needs id or memoKey", resource=RESOURCE_DEBIT_MEMO)
                row = self._row("DebitMemo", key, RESOURCE_DEBIT_MEMO)
                due = item.get("dueDate")
                if due is not None:
                    try:
                        due_date = date.fromisoformat(str(due))
                    except ValueError:
                        raise invalid(
                            f"dueDate {due!r} is not a date", resource=RESOURCE_DEBIT_MEMO
                        ) from None
                    self._touch(OBJECTS["DebitMemo"], row, {"DueDate": due_date})
        return {"success": True}

    def update_payment_or_refund(self, kind: str, row_id: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/payments/{id}`` / ``/v1/refunds/{id}``: nested financeInformation."""
        resource = RESOURCE_PAYMENT if kind == "Payment" else RESOURCE_REFUND
        body = object_body(body)
        with self._lock:
            self._advance()
            row = self._tables[kind].rows.get(row_id)
            if row is None:
                raise not_found(f"{kind.lower()} {row_id} does not exist", resource=resource)
            changes: dict[str, Any] = {}
            finance = body.get("financeInformation")
            if finance is not None:
                if not isinstance(finance, dict):
                    raise invalid("financeInformation must be an object", resource=resource)
                if "transferredToAccounting" in finance:
                    value = finance["transferredToAccounting"]
                    if value not in TRANSFERRED_REST:
                        raise invalid(
                            f"transferredToAccounting must be one of {', '.join(TRANSFERRED_REST)}",
                            resource=resource,
                        )
                    changes["TransferredToAccounting"] = value
            if isinstance(body.get("comment"), str):
                changes["Comment"] = body["comment"]
            self._touch(OBJECTS[kind], row, changes)
            number_field = "PaymentNumber" if kind == "Payment" else "RefundNumber"
            return {
                "id": row["Id"],
                "number": row[number_field],
                "accountId": row["AccountId"],
                "amount": number_json(row["Amount"]),
                "status": row["Status"],
                "type": row["Type"],
                "financeInformation": {"transferredToAccounting": row["TransferredToAccounting"]},
                "success": True,
            }

    def _memo_v1(self, kind: str, row: dict[str, Any]) -> dict[str, Any]:
        """A memo as ``CreditMemoResponse`` / ``DebitMemoResponse`` (a credit memo's open amount is
        ``unappliedAmount``, a debit memo's ``balance``)."""
        open_amount = "unappliedAmount" if kind == "CreditMemo" else "balance"
        return {
            "id": row["Id"],
            "number": row["MemoNumber"],
            "accountId": row["AccountId"],
            "amount": number_json(row["TotalAmount"]),
            open_amount: number_json(row["Balance"]),
            "status": row["Status"],
            "transferredToAccounting": row["TransferredToAccounting"],
            "success": True,
        }

    def _row(self, kind: str, key: str, resource: int) -> dict[str, Any]:
        row = self._tables[kind].get(key)
        if row is None:
            raise not_found(f"{kind} {key} does not exist", resource=resource)
        return row
