"""Actions: ``POST /v1/action/update`` (zuora-api.md section 10) and ZOQL queries (section 5).

``action/update`` takes one object type and at most 50 objects per call and answers HTTP 200 with
one result per object in request order; partial success is normal. Row failures are *not*
raised: :meth:`Actions.update` returns a :class:`RowResult` per object, correlated by position
(a failed row may lack its ``Id``). Actions do not support Invoice Settlement objects: mark
credit and debit memos through :mod:`shared.zuora.transfers`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import Reason, Transient
from shared.zuora.transport import IdempotencyKey, ZuoraTransport
from shared.zuora.zoql import MAX_BATCH, Zoql

MAX_OBJECTS_PER_CALL = 50
UNSUPPORTED_TYPES = frozenset({"CreditMemo", "DebitMemo", "CreditMemoItem", "DebitMemoItem"})


@dataclass(frozen=True)
class RowResult:
    """The outcome for ``objects[index]``: ``id`` is the response's ``Id`` or the one we sent."""

    index: int
    id: str | None
    success: bool
    errors: tuple[Reason, ...] = ()


class Actions:
    def __init__(self, transport: ZuoraTransport, zoql: Zoql) -> None:
        self._t = transport
        self._zoql = zoql

    def update(
        self,
        type: str,
        objects: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: IdempotencyKey | None = None,
    ) -> list[RowResult]:
        """Update ``objects`` (each with an ``Id``) of one SOAP ``type`` in calls of at most 50;
        return one result per object in input order.

        Each call's Idempotency-Key derives from its body, or from ``idempotency_key`` plus the
        chunk number. A body-derived key replays Zuora's first answer for 24 h: if a field may go
        A -> B -> A within a day, pass a key that includes a version (e.g. the record's
        ``updatedDate``) so the second A is really applied.
        """
        if not type or type in UNSUPPORTED_TYPES:
            raise ValueError(f"action/update cannot update {type!r} (use the REST PUTs for memos)")
        for position, obj in enumerate(objects):
            if not obj.get("Id"):
                raise ValueError(f"objects[{position}] has no Id")
        results: list[RowResult] = []
        for number, start in enumerate(range(0, len(objects), MAX_OBJECTS_PER_CALL)):
            chunk = [dict(o) for o in objects[start : start + MAX_OBJECTS_PER_CALL]]
            key: IdempotencyKey | None = None
            if idempotency_key is not None:
                base = (idempotency_key,) if isinstance(idempotency_key, str) else tuple(idempotency_key)
                key = (*base, f"chunk-{number}")
            body = self._t.call(
                "POST",
                "/v1/action/update",
                operation=f"action.update.{type}",
                body={"type": type, "objects": chunk},
                idempotency_key=key,
            )
            results.extend(_rows(body, chunk, start, type))
        return results

    def query(self, zoql: str, *, batch_size: int = MAX_BATCH) -> Iterator[dict[str, Any]]:
        """Every record of a ZOQL query (``action/query`` + ``queryMore``): see :mod:`.zoql`."""
        return self._zoql.query(zoql, batch_size=batch_size)


def _rows(body: Any, chunk: list[dict[str, Any]], start: int, type: str) -> Iterator[RowResult]:
    if not isinstance(body, list) or len(body) != len(chunk):
        got = len(body) if isinstance(body, list) else _type_name(body)
        raise Transient(
            f"action/update {type}: {got} results for {len(chunk)} objects; cannot correlate rows",
            api="zuora",
        )
    for offset, (sent, answer) in enumerate(zip(chunk, body, strict=True)):
        row: Mapping[str, Any] = answer if isinstance(answer, Mapping) else {}
        success = row.get("Success", row.get("success")) is True
        errors = tuple(
            Reason(
                code=str(e.get("Code", e.get("code", ""))),
                message=str(e.get("Message", e.get("message", ""))),
            )
            for e in row.get("Errors", row.get("errors")) or []
            if isinstance(e, Mapping)
        )
        row_id = row.get("Id") or row.get("id") or sent.get("Id")
        yield RowResult(
            index=start + offset, id=None if row_id is None else str(row_id), success=success, errors=errors
        )


def _type_name(value: object) -> str:
    return type(value).__name__
