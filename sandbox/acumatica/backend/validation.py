"""What every writer shares: copying a request's fields onto a row and the checks behind a 422.

``_apply`` copies the sent fields (labels to codes, lengths checked, read-only fields ignored);
the checks add field errors to ``Problems``: required values, references that must exist and be
active (accounts, subaccounts, currencies, branches), and the posting period (pitfall 3), which
the release actions check again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from sandbox.acumatica.entities import ObjectSpec, label_to_code
from sandbox.acumatica.records import Parsed, Problems, Row

from .state import InstanceState, Touched, normalize_period, period_text


class Validation(InstanceState):
    """The shared steps of the entity writers and the release actions."""

    def _apply(
        self,
        obj: ObjectSpec,
        row: Row,
        parsed: Parsed,
        problems: Problems,
        touched: Touched,
        *,
        prefix: tuple[str, ...] = (),
        frozen: frozenset[str] = frozenset(),
    ) -> None:
        """Copy the sent fields onto ``row``: labels to codes, lengths checked, read-only ignored."""
        if parsed.note is not None:
            row.note = parsed.note
        for view, values in parsed.custom.items():
            row.custom.setdefault(view, {}).update(values)
        sent = touched.fields.setdefault(row.id, set())
        for name, sent_value in parsed.values.items():
            spec_field = obj.field(name)
            if spec_field is None or spec_field.readonly or name in frozen:
                continue
            path = (*prefix, name)
            value = sent_value
            if value is not None and spec_field.labels is not None:
                code = label_to_code(spec_field.labels, str(value))
                if code is None:
                    problems.add(
                        path, f"The value '{value}' is not in the list of allowed values for {name}."
                    )
                    row.values[spec_field.key] = value
                    continue
                value = code
            if (
                isinstance(value, str)
                and spec_field.max_length is not None
                and len(value) > spec_field.max_length
            ):
                problems.add(path, f"The length of the value exceeds {spec_field.max_length} characters.")
            row.values[spec_field.key] = value
            sent.add(name)
        for name, link_parsed in parsed.links.items():
            link = obj.link(name)
            if link is None:
                continue
            self._apply(
                link.item, row.link(link.attr), link_parsed, problems, touched, prefix=(*prefix, name)
            )
        for name, lines in parsed.collections.items():
            collection = obj.collection(name)
            if collection is None or collection.readonly:
                continue
            stored = row.lines(collection.attr)
            for line in lines:
                existing = None
                if line.id is not None:
                    existing = next(
                        (
                            candidate
                            for candidate in stored
                            if candidate.id == line.id
                            and (collection.shows is None or collection.shows(candidate))
                        ),
                        None,
                    )
                if line.delete:
                    if existing is not None:
                        stored.remove(existing)
                    continue
                if existing is None:
                    existing = Row()
                    stored.append(existing)
                self._apply(collection.item, existing, line, problems, touched, prefix=(name, existing.id))

    def _required(self, problems: Problems, path: tuple[str, ...], value: Any, display: str) -> bool:
        if value is None or value == "":
            problems.add(path, f"'{display}' cannot be empty.")
            return False
        return True

    def _exists(self, problems: Problems, path: tuple[str, ...], ok: bool, display: str, value: Any) -> bool:
        if not ok:
            problems.add(path, f"{display} '{value}' cannot be found in the system.")
        return ok

    def _account_ok(self, code: Any, *, cash: bool = False) -> bool:
        row = self._lookup("Account", str(code))
        if row is None or not row.values.get("Active"):
            return False
        return not cash or bool(row.values.get("CashAccount"))

    def _subaccount_ok(self, code: Any) -> bool:
        row = self._lookup("Subaccount", str(code))
        return row is not None and bool(row.values.get("Active"))

    def _currency_ok(self, code: Any) -> bool:
        row = self._lookup("Currency", str(code))
        return row is not None and bool(row.values.get("Active"))

    def _branch_ok(self, code: Any) -> bool:
        branch = self.branches.get(str(code))
        return branch is not None and bool(branch["active"])

    def _precision(self, currency: Any) -> int:
        row = self._lookup("Currency", str(currency)) if currency else None
        return int(row.values.get("DecimalPrecision") or 2) if row is not None else 2

    def _period_problem(self, period: str, *, module: str, from_date: date | None) -> str | None:
        """Why ``period`` cannot take a posting, or ``None`` (pitfall 3)."""
        line = self._period_line(period)
        if line is None:
            if from_date is not None:
                return (
                    f"The financial period that corresponds to the {from_date.month}/{from_date.day}/"
                    f"{from_date.year} date does not exist in the master financial calendar."
                )
            text = period_text(period)
            return f"The {text} financial period does not exist in the master financial calendar."
        status = line.values.get("Status")
        if status == "Inactive":
            return f"The {period_text(period)} financial period is inactive."
        if status in ("Closed", "Locked"):
            return f"The {period_text(period)} financial period is {str(status).lower()}."
        if module == "AR" and line.values.get("ClosedInAR"):
            return f"The {period_text(period)} financial period is closed in Accounts Receivable."
        return None

    def _post_period(
        self,
        row: Row,
        problems: Problems,
        *,
        module: str,
        sent: set[str],
        period_field: str | None,
        date_field: str,
    ) -> str | None:
        """Set ``fin_period`` (sent as MMYYYY/MM-YYYY, else derived from the date) and check it is open.

        An explicit period is kept on later updates unless a new period or a new date is sent.
        """
        doc_date: date | None = row.values.get("doc_date")
        raw = row.values.get("fin_period")
        from_date: date | None = None
        if period_field is not None and period_field in sent and raw:
            period = normalize_period(str(raw))
            if period is None:
                problems.add(
                    (period_field,), f"'{raw}' is not a valid financial period. Use the MMYYYY format."
                )
                return None
        elif raw and period_field is not None and date_field not in sent:
            period = str(raw)
        elif doc_date is not None:
            period = f"{doc_date.month:02d}{doc_date.year}"
            from_date = doc_date
        else:
            return None
        row.values["fin_period"] = period
        message = self._period_problem(period, module=module, from_date=from_date)
        if message is not None:
            problems.add(
                (date_field,) if from_date is not None or period_field is None else (period_field,), message
            )
        return period

    def _next_line_nbr(self, lines: Iterable[Row]) -> int:
        return max((int(line.values.get("LineNbr") or 0) for line in lines), default=0) + 1
