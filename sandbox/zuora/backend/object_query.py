"""Object Query reads (section 9): one keyset page of a collection, or one record by key.

Parsing the query string and rendering records live in ``sandbox.zuora.objectquery``; the
keyset scan and cursors in ``sandbox.zuora.paging``.
"""

from __future__ import annotations

from typing import Any

from sandbox.zuora.errors import ZuoraError
from sandbox.zuora.objectquery import ObjectQuery, next_cursor, render
from sandbox.zuora.paging import keyset_page, keyset_scan
from sandbox.zuora.schema import ENDPOINTS, Kind, Relation

from .state import TenantState


class ObjectQueries(TenantState):
    """``GET /object-query/{collection}`` and ``GET /object-query/{collection}/{key}``."""

    def object_query(self, path: str, query: ObjectQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``/object-query/{path}`` and the next cursor (None on the last page)."""
        endpoint = ENDPOINTS[path]
        obj = endpoint.obj
        with self._lock:
            self._advance()
            zone = self.zone
            table = self._tables[obj.name]
            narrowed: list[dict[str, Any]] | None = None
            for flt in query.filters:
                # An EQ on an indexed id narrows the scan (invoice-items?filter[]=invoiceid.EQ:...).
                if flt.op == "EQ" and flt.kind is Kind.ID and table.indexed(flt.field) and flt.value:
                    narrowed = table.where(flt.field, flt.value) or table.where(
                        flt.field, str(flt.value).lower()
                    )
                    break

            def accept(row: dict[str, Any]) -> bool:
                return all(f.test(row) for f in query.filters)

            if narrowed is not None:
                page, more = keyset_page(
                    (r for r in narrowed if accept(r)),
                    query.sort_key,
                    descending=query.descending,
                    after=query.after,
                    page_size=query.page_size,
                )
            else:
                keys, ordered = table.ordered(query.sort_field, query.sort_key)
                page, more = keyset_scan(
                    keys,
                    ordered,
                    descending=query.descending,
                    after=query.after,
                    page_size=query.page_size,
                    accept=accept,
                )
            data = [render(row, obj, query, self._resolve, zone) for row in page]
            cursor = next_cursor(query, page[-1], zone) if more and page else None
        return data, cursor

    def object_query_by_key(self, path: str, key: str, query: ObjectQuery) -> dict[str, Any]:
        """One record by id or number; unknown is category 40."""
        endpoint = ENDPOINTS[path]
        with self._lock:
            self._advance()
            row = self._tables[endpoint.obj.name].get(key)
            if row is None:
                raise ZuoraError(40, f"{endpoint.obj.name} {key} not found")
            return render(row, endpoint.obj, query, self._resolve, self.zone)

    def _resolve(
        self, relation: Relation, record: dict[str, Any]
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        table = self._tables[relation.target]
        if relation.kind == "one":
            ref = record.get(relation.local)
            return table.rows.get(ref) if ref else None
        return table.where(relation.remote, record["Id"])
