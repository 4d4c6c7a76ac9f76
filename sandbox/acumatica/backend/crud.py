"""Entity CRUD (section 4): ``GET`` a record or a list, ``PUT`` (match, then update or insert),
``DELETE``, and ``$adHocSchema``.

A PUT parses the wrapped-value body (400s), finds its target by id, keys or ``$filter``, lets
the entity's writer (``receivables``, ``ledger``) apply and check it on a copy, and stores the copy
only when no field carries an error (else 422 with the record and its errors, section 3.3).
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.acumatica import errors
from sandbox.acumatica.entities import ENTITIES, EntitySpec, in_version
from sandbox.acumatica.errors import RecordInvalid
from sandbox.acumatica.records import Problems, Row, custom_type, parse_entity, render_entity

from .state import InstanceState, PutResult, QueryOptions, RequestContext, Write


class Crud(InstanceState):
    """The record reads and writes under ``/entity/{endpoint}/{Entity}``."""

    def get_record(self, entity: str, keys: list[str], options: QueryOptions) -> dict[str, Any]:
        """``GET {Entity}/{k1}/{k2}`` or ``GET {Entity}/{id}``; a missing record is the 500 (4.2)."""
        spec = ENTITIES[entity]
        shape = self._shape(spec, options, listing=False)
        with self._lock:
            self._advance_operations()
            row = self._find(spec, keys)
            if row is None:
                raise errors.no_entity()
            return render_entity(spec, row, shape.render)

    def list_records(self, entity: str, options: QueryOptions) -> list[dict[str, Any]]:
        """``GET {Entity}`` with ``$filter``, ``$select``, ``$expand``, ``$skip`` then ``$top``."""
        spec = ENTITIES[entity]
        shape = self._shape(spec, options, listing=True)
        with self._lock:
            self._advance_operations()
            rows = self._rows(spec)
            if shape.filter is not None:
                rows = [row for row in rows if shape.filter.matches(row)]
            if shape.skip:
                rows = rows[shape.skip :]
            if shape.top is not None:
                rows = rows[: shape.top]
            return [
                render_entity(spec, row, shape.render, row_number=n) for n, row in enumerate(rows, start=1)
            ]

    def ad_hoc_schema(self, entity: str) -> dict[str, Any]:
        """``GET {Entity}/$adHocSchema``: an empty record (every contract field ``{}``) whose
        ``custom`` names each field outside the contract, by view, with its type (the
        definition's "field name, view name, and type of the fields that are not defined in the
        contract"); here, the custom fields stored on the entity's records."""
        spec = ENTITIES[entity]
        out: dict[str, Any] = {"id": str(uuid.UUID(int=0)), "rowNumber": 1, "note": {}}
        for spec_field in spec.obj.fields:
            if in_version(spec_field, self.config.endpoint_version):
                out[spec_field.name] = {}
        custom: dict[str, dict[str, Any]] = {}
        with self._lock:
            for row in self._rows(spec):
                for view, fields in row.custom.items():
                    for name, value in fields.items():
                        custom.setdefault(view, {}).setdefault(name, {"type": custom_type(value)})
        out["custom"] = custom
        return out

    def put(
        self,
        entity: str,
        body: Any,
        options: QueryOptions,
        context: RequestContext,
        *,
        if_none_match: bool = False,
        if_match: bool = False,
    ) -> PutResult:
        """``PUT {Entity}``: match by id, then keys, then ``$filter``; update it or insert (4.1)."""
        spec = ENTITIES[entity]
        parsed = parse_entity(spec, body, self.config.tz)
        shape = self._shape(spec, options, listing=False)
        with self._lock:
            self._advance_operations()
            target = self._match(spec, parsed, shape.filter)
            if if_none_match and target is not None:
                raise errors.precondition_failed(True)
            if if_match and target is None:
                raise errors.precondition_failed(False)
            created = target is None
            candidate = Row() if target is None else target.clone()
            problems = Problems()
            self._write(Write(spec, candidate, parsed, problems, context, created))
            if problems:
                overrides: dict[str, Any] = {}
                if created and spec.auto_key and not self.config.manual_numbering:
                    overrides[spec.auto_key] = "<NEW>"
                raise RecordInvalid(
                    render_entity(
                        spec,
                        candidate,
                        shape.render,
                        problems=self._top(spec, problems, created),
                        overrides=overrides,
                    )
                )
            stamp = self._now_dt()
            if created:
                if spec.auto_key:
                    number_field = self._field(spec, spec.auto_key)
                    sent = candidate.values.get(number_field.key)
                    if not (self.config.manual_numbering and sent):
                        candidate.values[number_field.key] = self._next_number(
                            spec, candidate.values.get("doc_type")
                        )
                if spec.obj.field("CreatedDateTime") is not None:
                    candidate.values[self._field(spec, "CreatedDateTime").key] = stamp
                if spec.obj.field("NoteID") is not None:
                    candidate.values[self._field(spec, "NoteID").key] = candidate.id
            if spec.obj.field("LastModifiedDateTime") is not None:
                candidate.values[self._field(spec, "LastModifiedDateTime").key] = stamp
            self._save(spec, candidate)
            return PutResult(render_entity(spec, candidate, shape.render), created)

    def _top(self, spec: EntitySpec, problems: Problems, created: bool) -> Problems:
        """The 422's top-level message: the generic line when fields carry errors (section 3.3)."""
        messages = list(problems.top)
        if problems.fields:
            verb = "Inserting" if created else "Updating"
            # The double space is the real server's (section 3.3).
            messages.insert(
                0, f"{verb}  '{spec.cache_name}' record raised at least one error. Please review the errors."
            )
        return Problems(top=messages, fields=dict(problems.fields))

    def delete(self, entity: str, keys: list[str]) -> None:
        """``DELETE {Entity}/{keys}``: 204; released documents and used customers refuse (4.3)."""
        spec = ENTITIES[entity]
        with self._lock:
            row = self._find(spec, keys)
            if row is None:
                raise errors.no_entity()
            if row.values.get("released"):
                raise errors.http_error(500, "The document has been released and cannot be deleted.")
            if spec.name == "Customer":
                customer_id = row.values.get("CustomerID")
                if any(
                    doc.values.get("customer") == customer_id for doc in self.tables["ar_documents"].values()
                ):
                    raise errors.http_error(500, "The customer cannot be deleted because it has documents.")
            self._remove(spec, row)
