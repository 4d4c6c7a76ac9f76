"""ZOQL through ``POST /v1/action/query`` and ``/v1/action/queryMore`` (zuora-api.md section 5).

ZOQL string literals escape with a backslash, not SQL-style doubling (section 5.2):
``Dec'16`` is written ``'Dec\\'16'``. Always build literals with :func:`quote`. Keywords must be
lowercase; records come back with PascalCase keys and null fields omitted; at most 2,000 records
per batch, further batches through the ``queryLocator``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.errors import Rejected
from shared.zuora.paging import Pager
from shared.zuora.transport import ZuoraTransport
from shared.zuora.wire import is_text

MAX_BATCH = 2000

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def quote(value: str) -> str:
    """``value`` as a single-quoted ZOQL string literal: ``Dec'16`` -> ``'Dec\\'16'``. Inside the
    quotes only an unescaped ``'`` ends the literal and only ``\\`` starts an escape, so escaping
    those two (and the others section 5.2 lists) leaves no way out of it; every other character
    is sent as it is (docs/vendor-notes.md). ValueError for a lone surrogate, which no request
    can carry."""
    if not is_text(value):
        raise ValueError(f"cannot quote {value!r} for ZOQL: a lone surrogate is not text")
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


ACCOUNTING_PERIOD_FIELDS = ("Id", "Name", "Status", "StartDate", "EndDate", "FiscalYear", "Notes")


def accounting_period_by_name(name: str, fields: tuple[str, ...] = ACCOUNTING_PERIOD_FIELDS) -> str:
    """``select <fields> from AccountingPeriod where Name = '<name>'`` with ``name`` escaped.
    (``FiscalQuarter`` needs WSDL >= 81, so it is not in the default field list: section 5.3.)"""
    return f"select {', '.join(fields)} from AccountingPeriod where Name = {quote(name)}"


@dataclass(frozen=True)
class ZoqlBatch:
    """One response: its records (PascalCase keys), whether it was the last, and the raw body."""

    records: list[dict[str, Any]]
    query_locator: str | None
    done: bool
    response: dict[str, Any]


class Zoql:
    def __init__(self, transport: ZuoraTransport) -> None:
        self._t = transport

    def batches(self, zoql: str, *, batch_size: int = MAX_BATCH) -> Iterator[ZoqlBatch]:
        """Run ``zoql`` and follow ``queryLocator`` until ``done``. Each request carries a fresh
        Idempotency-Key, reused only by its own retries: a query repeated later must see current
        data, not Zuora's 24-hour replay of the first answer (section 3)."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        if not zoql.lstrip().startswith("select "):
            raise ValueError("ZOQL keywords must be lowercase: the query must start with 'select '")
        conf = {"batchSize": batch_size}
        body = self._t.call(
            "POST",
            "/v1/action/query",
            operation="zoql.query",
            body={"queryString": zoql, "conf": conf},
            idempotency_key=("zoql.query", uuid.uuid4().hex),
        )
        pager = Pager("zoql queryMore")
        while True:
            batch = _batch(body)
            yield batch
            pager.advance(None if batch.done else batch.query_locator)
            if pager.finished:
                return
            body = self._t.call(
                "POST",
                "/v1/action/queryMore",
                operation="zoql.query-more",
                body={"queryLocator": pager.current, "conf": conf},
                idempotency_key=("zoql.query-more", uuid.uuid4().hex),
            )

    def query(self, zoql: str, *, batch_size: int = MAX_BATCH) -> Iterator[dict[str, Any]]:
        """Every record of ``zoql`` across all batches."""
        for batch in self.batches(zoql, batch_size=batch_size):
            yield from batch.records


def _batch(body: Any) -> ZoqlBatch:
    # A query failure may come back in shapes the notes cannot confirm (section 4.2): anything
    # without a records list is an error.
    records = body.get("records", []) if isinstance(body, dict) else None
    if not isinstance(records, list) or ("records" not in body and body.get("size") != 0):
        raise Rejected("action/query answered without a records list", api="zuora", body=str(body)[:2000])
    locator = body.get("queryLocator") or None
    done = bool(body.get("done", locator is None))
    return ZoqlBatch(records=records, query_locator=locator, done=done, response=body)
