"""The ERP request a replay shows, and what was sent before read back from the ledger.

:class:`ErpRequest` is an adapter's :class:`~shared.erp.base.RenderedRequest` as ``replay
--dry-run`` prints it (:func:`pretty`: exact decimals, one wrapped field per line so a diff names
the fields that change) and as ``--json`` gives it. :func:`document_from_payload` turns a row's
``posted_payload`` back into the neutral document, so what was sent before is rendered by the
same adapter code as what would be sent now.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.erp.base import (
    Application,
    ArDocument,
    ArLine,
    Customer,
    Document,
    Journal,
    JournalLine,
    Payment,
    RenderedRequest,
)
from shared.ledger.db import dumps_json, loads_json


@dataclass(frozen=True)
class ErpRequest:
    """What the ERP adapter would send for a document: ``target`` (``acumatica``, ``file``, another
    adapter's name, or ``ledger`` for a stored payload that is no document), the ``operation``
    (``PUT Invoice``, ``export 2024-12/ar_documents.csv and ar_documents.jsonl rows``) and the
    ``body`` (the wire JSON, or the export rows)."""

    target: str
    operation: str
    body: Any

    @classmethod
    def of(cls, rendered: RenderedRequest) -> ErpRequest:
        """The request an adapter rendered (:meth:`~shared.erp.base.ErpTarget.render`)."""
        return cls(rendered.target, rendered.operation, rendered.body)

    def text(self) -> str:
        return pretty(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "operation": self.operation, "body": jsonable(self.body)}


def pretty(value: Any, indent: int = 0) -> str:
    """Indented JSON with every Decimal written as the exact number it holds (as the Acumatica
    client sends it, acumatica-api.md section 3.4) and dates as ISO strings; key order is kept."""
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        if len(value) == 1 and not isinstance(next(iter(value.values())), Mapping | list | tuple):
            # A wrapped value ({"value": X}, section 3.1) on one line: one field per line to diff.
            key, inner = next(iter(value.items()))
            return f"{{{json.dumps(str(key))}: {pretty(inner)}}}"
        items = [f"{pad}{json.dumps(str(k))}: {pretty(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{end}}}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(f"{pad}{pretty(v, indent + 1)}" for v in value) + f"\n{end}]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dt.date):
        return json.dumps(value.isoformat())
    return json.dumps(str(value), ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """Plain JSON values (Decimal as its exact string, dates ISO) for ``--json`` output."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def normalise(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload as the ledger stores it (JSON column codec: exact Decimals, ISO dates)."""
    result: dict[str, Any] = loads_json(dumps_json(dict(payload)))
    return result


# -- what was sent before ---------------------------------------------------------------------------


def _day(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _required_day(value: Any) -> dt.date:
    day = _day(value)
    if day is None:
        raise ValueError("a date is missing")
    return day


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _required_money(value: Any) -> Decimal:
    amount = _money(value)
    if amount is None:
        raise ValueError("an amount is missing")
    return amount


def _period(value: Any) -> dt.date | str | None:
    if value is None:
        return None
    text = str(value)
    return dt.date.fromisoformat(text[:10]) if len(text) >= 10 else text


def _applications_of(items: Any) -> tuple[Application, ...]:
    return tuple(
        Application(
            natural_key=str(a["natural_key"]),
            amount=_required_money(a["amount"]),
            kind=a.get("kind") or "invoice",
        )
        for a in items or ()
    )


def document_from_payload(payload: Mapping[str, Any]) -> Document:
    """The document a ``posted_payload`` describes: the item-level ``{"method", "document",
    "not_applied"}`` or a close's journal (``shared.close.journals.journal_payload``). Raises
    ValueError, KeyError or TypeError for a payload of another shape."""
    if "method" not in payload:
        return Journal(
            natural_key=str(payload["natural_key"]),
            date=_required_day(payload["date"]),
            post_period=str(payload["post_period"]),
            currency=str(payload["currency"]),
            ledger=str(payload["ledger"]),
            branch=str(payload["branch"]),
            description=str(payload.get("description") or ""),
            lines=tuple(
                JournalLine(
                    account=str(line["account"]),
                    subaccount=line.get("subaccount"),
                    debit=_required_money(line.get("debit", 0)),
                    credit=_required_money(line.get("credit", 0)),
                    description=str(line.get("description") or ""),
                )
                for line in payload["lines"]
            ),
        )
    method = payload["method"]
    doc: Mapping[str, Any] = payload["document"]
    if method == "upsert_customer":
        values: dict[str, Any] = {f.name: doc.get(f.name) for f in dataclasses.fields(Customer)}
        return Customer(**values)
    if method == "create_document":
        return ArDocument(
            kind=doc["kind"],
            natural_key=doc["natural_key"],
            customer_id=doc["customer_id"],
            date=_required_day(doc["date"]),
            currency=doc["currency"],
            description=doc["description"],
            lines=tuple(
                ArLine(
                    description=line["description"],
                    amount=_required_money(line["amount"]),
                    account=line["account"],
                    subaccount=line.get("subaccount"),
                    branch=line.get("branch"),
                    quantity=_money(line.get("quantity")) or Decimal(1),
                    unit_price=_money(line.get("unit_price")),
                )
                for line in doc["lines"]
            ),
            due_date=_day(doc.get("due_date")),
            post_period=_period(doc.get("post_period")),
            applies_to=_applications_of(doc.get("applies_to")),
        )
    if method == "create_payment":
        return Payment(
            kind=doc["kind"],
            natural_key=doc["natural_key"],
            customer_id=doc["customer_id"],
            date=_required_day(doc["date"]),
            amount=_required_money(doc["amount"]),
            currency=doc["currency"],
            payment_method=doc["payment_method"],
            cash_account=doc["cash_account"],
            description=doc["description"],
            applications=_applications_of(doc.get("applications")),
        )
    raise ValueError(f"unknown posting method {method!r}")
