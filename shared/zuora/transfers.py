"""``transferredToAccounting`` through the REST PUTs (zuora-api.md section 10.2).

Credit and debit memos cannot be written through Actions (Invoice Settlement objects), so they
take ``PUT /v1/credit-memos/{key}`` / ``PUT /v1/debit-memos/{key}`` with a top-level field, or
up to 50 at once with the bulk ``PUT /v1/credit-memos/bulk`` / ``PUT /v1/debit-memos/bulk``
(zuora-sdk ``bulk_update_credit_memos``/``bulk_update_debit_memos``:
``{"memos": [{"id": ..., "transferredToAccounting": "Yes"}]}``; each memo is updated in its own
transaction and answered with its own ``success`` in ``memos``). ``PUT /v1/debit-memos`` is
another operation (update due dates) and ``PUT /v1/credit-memos`` does not exist;
payments and refunds take ``PUT /v1/payments/{id}`` / ``PUT /v1/refunds/{id}`` with the field
nested in ``financeInformation``. PUTs carry no Idempotency-Key (section 3) and setting the same
value again is harmless, so they are retried like reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from shared.errors import Reason, Rejected, Transient
from shared.zuora.actions import RowResult
from shared.zuora.transport import ZuoraTransport
from shared.zuora.wire import segment

TransferredValue = Literal["Processing", "Yes", "No", "Error", "Ignore"]
TRANSFERRED_VALUES = frozenset({"Processing", "Yes", "No", "Error", "Ignore"})
MAX_MEMOS_PER_CALL = 50


def _checked(value: str) -> str:
    if value not in TRANSFERRED_VALUES:
        raise ValueError(
            f"transferredToAccounting must be one of {sorted(TRANSFERRED_VALUES)}, not {value!r}"
        )
    return value


class Transfers:
    def __init__(self, transport: ZuoraTransport) -> None:
        self._t = transport

    def credit_memo(self, key: str, value: TransferredValue = "Yes") -> None:
        """Mark a credit memo (id or number)."""
        self._t.call(
            "PUT",
            f"/v1/credit-memos/{segment(key)}",
            operation="transfers.credit-memo",
            body={"transferredToAccounting": _checked(value)},
        )

    def debit_memo(self, key: str, value: TransferredValue = "Yes") -> None:
        """Mark a debit memo (id or number)."""
        self._t.call(
            "PUT",
            f"/v1/debit-memos/{segment(key)}",
            operation="transfers.debit-memo",
            body={"transferredToAccounting": _checked(value)},
        )

    def credit_memos(self, ids: Sequence[str], value: TransferredValue = "Yes") -> list[RowResult]:
        """Mark credit memos in calls of at most 50; one result per id, in order."""
        return self._bulk("credit-memos", ids, value)

    def debit_memos(self, ids: Sequence[str], value: TransferredValue = "Yes") -> list[RowResult]:
        """Mark debit memos in calls of at most 50; one result per id, in order."""
        return self._bulk("debit-memos", ids, value)

    def _bulk(self, path: str, ids: Sequence[str], value: TransferredValue) -> list[RowResult]:
        checked = _checked(value)
        for position, memo_id in enumerate(ids):
            if not memo_id:
                raise ValueError(f"ids[{position}] is empty")
        results: list[RowResult] = []
        for start in range(0, len(ids), MAX_MEMOS_PER_CALL):
            chunk = list(ids[start : start + MAX_MEMOS_PER_CALL])
            body = self._t.call(
                "PUT",
                f"/v1/{path}/bulk",
                operation=f"transfers.{path}",
                body={"memos": [{"id": memo_id, "transferredToAccounting": checked} for memo_id in chunk]},
            )
            results.extend(_memo_results(body, f"PUT /v1/{path}/bulk", chunk, start))
        return results

    def payment(self, payment_id: str, value: TransferredValue = "Yes") -> None:
        """Mark a payment (``financeInformation.transferredToAccounting``)."""
        self._t.call(
            "PUT",
            f"/v1/payments/{segment(payment_id)}",
            operation="transfers.payment",
            body={"financeInformation": {"transferredToAccounting": _checked(value)}},
        )

    def refund(self, refund_id: str, value: TransferredValue = "Yes") -> None:
        """Mark a refund (``financeInformation.transferredToAccounting``)."""
        self._t.call(
            "PUT",
            f"/v1/refunds/{segment(refund_id)}",
            operation="transfers.refund",
            body={"financeInformation": {"transferredToAccounting": _checked(value)}},
        )


def _memo_results(body: Any, call: str, chunk: list[str], start: int) -> list[RowResult]:
    """One result per sent id. Answers are matched by ``id`` (or ``number``) where they carry
    one, else by position; an answer that cannot be correlated is an error, never a guess.

    An answer without a per-memo ``memos`` list (a bare ``{"success": true}``, which is what
    another operation on a similar path gives) says nothing about any memo: it is
    :class:`~shared.errors.Rejected`, so the caller falls back to one PUT per memo. A list of the
    wrong length is :class:`~shared.errors.Transient`."""
    answers = body.get("memos") if isinstance(body, Mapping) else None
    if not isinstance(answers, list):
        raise Rejected(
            f"{call} answered without a per-memo list; cannot tell which memos were updated", api="zuora"
        )
    if len(answers) != len(chunk):
        raise Transient(
            f"{call}: {len(answers)} results for {len(chunk)} memos; cannot correlate them", api="zuora"
        )
    by_id: dict[str, Mapping[str, Any]] = {}
    for answer in answers:
        if isinstance(answer, Mapping):
            for key in ("id", "number"):
                if isinstance(answer.get(key), str):
                    by_id[answer[key]] = answer
    results: list[RowResult] = []
    for offset, memo_id in enumerate(chunk):
        positional = answers[offset]
        answer = by_id.get(memo_id) or (positional if isinstance(positional, Mapping) else {})
        reasons = tuple(
            Reason(code=str(r.get("code", "")), message=str(r.get("message", "")))
            for r in answer.get("reasons") or []
            if isinstance(r, Mapping)
        )
        results.append(
            RowResult(index=start + offset, id=memo_id, success=answer.get("success") is True, errors=reasons)
        )
    return results
