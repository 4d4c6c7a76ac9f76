"""The Actions API: ZOQL ``action/query`` and ``action/queryMore`` (section 5), ``action/update`` (10).

Query parsing lives in ``sandbox.zuora.zoql``; batches and query locators in ``sandbox.zuora.paging``.
An update answers one result per object, in request order; only a bad envelope fails the whole call.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sandbox.zuora import zoql
from sandbox.zuora.errors import ActionFault, UnrecognisedFields
from sandbox.zuora.formats import number_json, zoql_datetime
from sandbox.zuora.schema import OBJECTS, ObjectType

from .state import TRANSFERRED_ACTIONS, TenantState

MAX_ACTION_OBJECTS = 50

# Fields each Actions type may update (section 10); everything else known is a row error.
ACTION_UPDATABLE: dict[str, frozenset[str]] = {
    "Invoice": frozenset({"TransferredToAccounting"}),
    "Payment": frozenset({"TransferredToAccounting"}),
    "Refund": frozenset({"TransferredToAccounting"}),
    "Account": frozenset({"ERPAccountId__c", "Notes", "CrmId", "Name", "PurchaseOrderNumber"}),
}


class Actions(TenantState):
    """``/v1/action/query``, ``/v1/action/queryMore`` and ``/v1/action/update``."""

    def zoql_query(self, query_string: Any, batch_size: int, wsdl_version: int) -> dict[str, Any]:
        """The first batch of a ZOQL query (``records``, ``size``, ``done``, ``queryLocator`` while
        more follow); fields newer than ``wsdl_version`` and malformed queries are faults."""
        if not isinstance(query_string, str) or not query_string.strip():
            raise ActionFault("MALFORMED_QUERY", "queryString is required")
        try:
            query = zoql.parse(query_string)
        except zoql.ZoqlError as exc:
            raise ActionFault(exc.fault, str(exc)) from exc
        obj = next((o for o in OBJECTS.values() if o.name.lower() == query.object_name.lower()), None)
        if obj is None or not obj.zoql:
            raise ActionFault("INVALID_TYPE", f"invalid ZOQL object: {query.object_name}")
        selected = ["Id"]
        for name in query.fields:
            api_name = obj.field_named(name)
            if api_name is None or obj.min_wsdl.get(api_name, 0) > wsdl_version:
                raise ActionFault("INVALID_FIELD", f"invalid field for query: {obj.name}.{name}")
            if api_name not in selected:
                selected.append(api_name)
        with self._lock:
            self._advance()
            try:
                where = zoql.compile_where(query, obj, self.zone)
            except zoql.ZoqlError as exc:
                raise ActionFault(exc.fault, str(exc)) from exc
            zone = self.zone
            rows = [
                self._zoql_record(row, selected, zone)
                for row in self._tables[obj.name]
                if zoql.matches(where, row)
            ]
            batch, locator = self._locators.first_batch(
                rows, batch_size, self.now(), self._config.query_locator_ttl_seconds
            )
        return _zoql_response(batch, locator)

    def zoql_query_more(self, locator: Any, batch_size: int) -> dict[str, Any]:
        """The next batch behind ``locator``; an unknown or expired locator is INVALID_QUERY_LOCATOR."""
        if not isinstance(locator, str) or not locator:
            raise ActionFault("INVALID_QUERY_LOCATOR", "queryLocator is required")
        with self._lock:
            found = self._locators.next_batch(
                locator, batch_size, self.now(), self._config.query_locator_ttl_seconds
            )
        if found is None:
            raise ActionFault("INVALID_QUERY_LOCATOR", "invalid or expired queryLocator")
        return _zoql_response(*found)

    @staticmethod
    def _zoql_record(row: dict[str, Any], selected: list[str], zone: timezone) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in selected:
            value = row.get(name)
            if value is None:
                continue  # ZOQL omits null fields (section 5.1)
            if isinstance(value, datetime):
                out[name] = zoql_datetime(value, zone)
            elif isinstance(value, date):
                out[name] = value.isoformat()
            elif isinstance(value, Decimal):
                out[name] = number_json(value)
            else:
                out[name] = value
        return out

    def action_update(self, type_name: Any, objects: Any, *, reject_unknown: bool) -> list[dict[str, Any]]:
        """Per-row results in request order; whole-call faults for a bad envelope."""
        if not isinstance(type_name, str) or not type_name:
            raise ActionFault("MISSING_REQUIRED_VALUE", "type is required")
        if not isinstance(objects, list) or not objects:
            raise ActionFault("MISSING_REQUIRED_VALUE", "objects must be a non-empty array")
        if len(objects) > MAX_ACTION_OBJECTS:
            raise ActionFault(
                "MAX_RECORDS_EXCEEDED", f"at most {MAX_ACTION_OBJECTS} objects per call, got {len(objects)}"
            )
        if any(not isinstance(o, dict) for o in objects):
            raise ActionFault("INVALID_VALUE", "objects must not contain null or non-object entries")
        obj = OBJECTS.get(type_name)
        if obj is not None and reject_unknown:
            for item in objects:
                unknown = [k for k in item if k != "fieldsToNull" and obj.field_named(k) is None]
                if unknown:
                    raise UnrecognisedFields(str(unknown))
        with self._lock:
            self._advance()
            return [self._update_row(type_name, obj, item) for item in objects]

    def _update_row(self, type_name: str, obj: ObjectType | None, item: dict[str, Any]) -> dict[str, Any]:
        if obj is None or type_name not in ACTION_UPDATABLE:
            # Invoice Settlement objects (CreditMemo, DebitMemo) are not Actions objects (10.1).
            return _row_error("INVALID_TYPE", f"invalid type for update: {type_name}")
        row_id = item.get("Id")
        if not isinstance(row_id, str) or not row_id:
            return _row_error("MISSING_REQUIRED_VALUE", "Id is required")
        row = self._tables[obj.name].rows.get(row_id)
        if row is None:
            return _row_error("INVALID_ID", f"invalid id {row_id}")
        changes: dict[str, Any] = {}
        allowed = ACTION_UPDATABLE[type_name]
        to_null = item.get("fieldsToNull") or []
        if not isinstance(to_null, list):
            return _row_error("INVALID_VALUE", "fieldsToNull must be an array")
        for key, value in list(item.items()) + [(name, None) for name in to_null]:
            if key in ("Id", "fieldsToNull"):
                continue
            name = obj.field_named(str(key))
            if name is None:
                continue  # unknown fields are silently ignored (section 10.1)
            if name not in allowed:
                return _row_error("INVALID_FIELD", f"{name} cannot be updated on {type_name}")
            if name == "TransferredToAccounting":
                if value not in TRANSFERRED_ACTIONS:
                    return _row_error(
                        "INVALID_VALUE",
                        f"TransferredToAccounting must be one of {', '.join(TRANSFERRED_ACTIONS)}",
                    )
                if type_name == "Invoice" and row["Status"] != "Posted":
                    return _row_error(
                        "INVALID_VALUE", "TransferredToAccounting can only be set on Posted invoices"
                    )
            elif value is not None and not isinstance(value, str):
                return _row_error("INVALID_VALUE", f"{name} must be a string")
            changes[name] = value
        self._touch(obj, row, changes)
        return {"Success": True, "Id": row_id}


def _zoql_response(rows: list[dict[str, Any]], locator: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"records": rows, "size": len(rows), "done": locator is None}
    if locator is not None:
        body["queryLocator"] = locator
    return body


def _row_error(code_name: str, message: str) -> dict[str, Any]:
    return {"Success": False, "Errors": [{"Code": code_name, "Message": message}]}
