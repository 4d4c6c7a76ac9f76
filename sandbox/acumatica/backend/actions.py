"""Long-running actions (section 4.4): ReleaseInvoice, ReleasePayment, ReleaseJournalTransaction.

``invoke`` starts an operation; it runs when its polls are used up (``action_polls``), when
``action_seconds`` pass, or at once with ``action_polls == 0``. Releasing gives Open/Closed
documents (by balance) or Posted/Unposted batches (``auto_post``) and applies a payment's,
refund's or credit memo's applications to their documents.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sandbox.acumatica import errors
from sandbox.acumatica.entities import ENTITIES, INVOICE_TYPES
from sandbox.acumatica.errors import ActionFailed
from sandbox.acumatica.records import Row, parse_entity

from .state import ZERO, Operation, RequestContext
from .validation import Validation


class Actions(Validation):
    """``POST {Entity}/{Action}`` and ``GET {Entity}/{Action}/status/{id}``."""

    def invoke(self, entity: str, action: str, body: Any, context: RequestContext) -> Operation:
        """``POST {Entity}/{Action}``: start a long-running action on the record ``entity`` names (4.4).

        With ``action_polls == 0`` the action runs at once (the handler answers 204); a failure
        then surfaces right here as a 500. Otherwise it runs when the polls are used up (or
        ``action_seconds`` pass) and a failure surfaces on the status poll.
        """
        spec = ENTITIES[entity]
        if not isinstance(body, dict):
            raise errors.model_state({"entity": ["The request body must be a JSON object."]})
        parsed = parse_entity(spec, body.get("entity") or {}, self.config.tz)
        with self._lock:
            self._advance_operations()
            row = self._match(spec, parsed, None)
            if row is None:
                raise errors.no_entity()
            operation = Operation(
                id=str(uuid.uuid4()),
                entity=entity,
                action=action,
                row_id=row.id,
                started=self.now(),
                polls_left=self.config.action_polls,
            )
            self.operations[operation.id] = operation
            if operation.polls_left == 0:
                self._execute(operation)
                if operation.state == "failed":
                    raise errors.http_error(500, operation.error)
            return operation

    def poll(self, entity: str, action: str, operation_id: str) -> bool:
        """``GET {Entity}/{Action}/status/{id}``: ``False`` while running (202), ``True`` when done (204)."""
        with self._lock:
            operation = self.operations.get(operation_id)
            if operation is None or operation.entity != entity or operation.action != action:
                raise errors.no_entity()
            self._advance_operations()
            if operation.state == "running":
                if operation.polls_left > 0:
                    operation.polls_left -= 1
                    return False
                self._execute(operation)
            if operation.state == "failed":
                raise errors.http_error(500, operation.error)
            return True

    def _advance_operations(self) -> None:
        limit = self.config.action_seconds
        if limit is None:
            return
        now = self.now()
        for operation in self.operations.values():
            if operation.state == "running" and now - operation.started >= limit:
                self._execute(operation)

    def _execute(self, operation: Operation) -> None:
        spec = ENTITIES[operation.entity]
        row = self.tables[spec.table].get(operation.row_id)
        try:
            if row is None:
                raise ActionFailed("No entity satisfies the condition.")
            runner = {
                "ReleaseInvoice": self._release_invoice,
                "ReleasePayment": self._release_payment,
                "ReleaseJournalTransaction": self._release_batch,
            }[operation.action]
            runner(row)
        except ActionFailed as failure:
            operation.state, operation.error = "failed", failure.message
            self.events["actions_failed"] += 1
            return
        operation.state = "done"
        self.events["actions_done"] += 1
        row.values["modified"] = self._now_dt()

    def _releasable(self, row: Row, module: str) -> None:
        values = row.values
        if values.get("hold"):
            raise ActionFailed("Document is On Hold and cannot be released.")
        if values.get("status") != "Balanced":
            raise ActionFailed("Document Status is invalid for processing.")
        period = values.get("fin_period")
        if period:
            message = self._period_problem(str(period), module=module, from_date=None)
            if message is not None:
                raise ActionFailed(message)

    def _release_invoice(self, row: Row) -> None:
        self._releasable(row, "AR")
        values = row.values
        if values.get("doc_type") == "CRM":
            # Releasing a credit memo releases its applications (section 6.4).
            self._release_applications(row)
            return
        values["released"] = True
        values["balance"] = values.get("amount") or ZERO
        values["status"] = "Open" if values["balance"] > 0 else "Closed"

    def _release_payment(self, row: Row) -> None:
        values = row.values
        if values.get("hold"):
            raise ActionFailed("Document is On Hold and cannot be released.")
        if values.get("status") not in ("Balanced", "Open"):
            raise ActionFailed("Document Status is invalid for processing.")
        if values.get("status") == "Balanced":
            self._releasable(row, "AR")
        self._release_applications(row)

    def _release_applications(self, row: Row) -> None:
        """Apply the unreleased applications of a payment, refund or credit memo to their
        documents (all are checked before any balance changes), then release the document: its
        balance is what is left unapplied (Open), or Closed at zero."""
        values = row.values
        pending = [line for line in row.lines("applications") if not line.values.get("released")]
        targets = []
        for line in pending:
            lv = line.values
            spec = ENTITIES["Invoice"] if lv.get("DocType") in INVOICE_TYPES else ENTITIES["Payment"]
            target = self._by_key(spec, (lv.get("DocType"), lv.get("ReferenceNbr")))
            if target is None or target.values.get("status") != "Open":
                raise ActionFailed(
                    f"The document {lv.get('ReferenceNbr')} is not open and cannot be adjusted."
                )
            if (lv.get("AmountPaid") or ZERO) > (target.values.get("balance") or ZERO):
                raise ActionFailed(
                    f"The amount paid exceeds the balance of the document {lv.get('ReferenceNbr')}."
                )
            targets.append(target)
        application_date = values.get("doc_date")
        for line, target in zip(pending, targets, strict=True):
            lv = line.values
            paid: Decimal = lv.get("AmountPaid") or ZERO
            target.values["balance"] = (target.values.get("balance") or ZERO) - paid
            if target.values["balance"] <= 0:
                target.values["balance"] = ZERO
                target.values["status"] = "Closed"
            target.values["modified"] = self._now_dt()
            lv["released"] = True
            lv["application_date"] = application_date
            lv["Balance"] = target.values["balance"]
            lv["Status"] = target.values["status"]
            target.lines("applied_by").append(
                Row(
                    values={
                        "AmountPaid": paid,
                        "Balance": target.values["balance"],
                        "DocType": values.get("doc_type"),
                        "PaymentDate": application_date,
                        "ReferenceNbr": values.get("ref_nbr"),
                        "Status": "Closed",
                    }
                )
            )
        applied = sum((line.values.get("AmountPaid") or ZERO for line in row.lines("applications")), ZERO)
        values["applied_total"] = applied
        values["released"] = True
        values["balance"] = (values.get("amount") or ZERO) - applied
        values["status"] = "Open" if values["balance"] > 0 else "Closed"

    def _release_batch(self, row: Row) -> None:
        self._releasable(row, "GL")
        lines = row.lines("lines")
        debit = sum((line.values.get("DebitAmount") or ZERO for line in lines), ZERO)
        credit = sum((line.values.get("CreditAmount") or ZERO for line in lines), ZERO)
        if debit != credit:
            raise ActionFailed("Batch is out of balance, please review.")
        row.values["released"] = True
        row.values["status"] = "Posted" if self.config.auto_post else "Unposted"
