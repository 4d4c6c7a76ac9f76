"""In-memory tables of Zuora records, keyed by id, findable by number, indexed by foreign keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .schema import INDEXED, OBJECTS, ObjectType


class Table:
    """The rows of one object type. Not thread-safe: the backend's lock guards every call."""

    def __init__(self, obj: ObjectType) -> None:
        self.obj = obj
        self.rows: dict[str, dict[str, Any]] = {}
        self._field_names = frozenset(obj.fields)
        self._numbers: dict[str, str] = {}
        self._indexes: dict[str, dict[Any, list[str]]] = {name: {} for name in INDEXED[obj.name]}
        self._version = 0
        self._sorted: dict[str, tuple[int, list[Any], list[dict[str, Any]]]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows.values())

    def insert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Store ``row`` (every schema field present, missing ones None) and index it."""
        missing = self._field_names.difference(row)
        if missing:
            row.update(dict.fromkeys(missing))
        row_id = row["Id"]
        self._version += 1
        if row_id in self.rows:
            raise ValueError(f"duplicate {self.obj.name} id {row_id}")
        self.rows[row_id] = row
        if self.obj.number_field and row.get(self.obj.number_field):
            self._numbers[row[self.obj.number_field]] = row_id
        for name, index in self._indexes.items():
            index.setdefault(row.get(name), []).append(row_id)
        return row

    def get(self, key: str) -> dict[str, Any] | None:
        """A row by id or by number (``INV00000001``)."""
        row = self.rows.get(key)
        if row is None and key in self._numbers:
            row = self.rows.get(self._numbers[key])
        return row

    def update(self, row_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        row = self.rows[row_id]
        self._version += 1
        for name, value in changes.items():
            if name in self._indexes and row.get(name) != value:
                ids = self._indexes[name].get(row.get(name), [])
                if row_id in ids:
                    ids.remove(row_id)
                self._indexes[name].setdefault(value, []).append(row_id)
            if name == self.obj.number_field and row.get(name) != value:
                self._numbers.pop(str(row.get(name)), None)
                if value:
                    self._numbers[value] = row_id
            row[name] = value
        return row

    def delete(self, row_id: str) -> dict[str, Any]:
        """Remove a row and its index entries (an application unapplied in full is gone in Zuora)."""
        row = self.rows.pop(row_id)
        self._version += 1
        if self.obj.number_field and row.get(self.obj.number_field):
            self._numbers.pop(row[self.obj.number_field], None)
        for name, index in self._indexes.items():
            ids = index.get(row.get(name), [])
            if row_id in ids:
                ids.remove(row_id)
        return row

    def where(self, field: str, value: Any) -> list[dict[str, Any]]:
        """Rows whose indexed ``field`` equals ``value``, in insertion order."""
        index = self._indexes.get(field)
        if index is None:
            return [row for row in self.rows.values() if row.get(field) == value]
        return [self.rows[row_id] for row_id in index.get(value, [])]

    def indexed(self, field: str) -> bool:
        return field in self._indexes

    def invalidate(self) -> None:
        """Drop cached orderings after rows were changed in place (not through ``update``)."""
        self._version += 1

    def ordered(
        self, name: str, key: Callable[[dict[str, Any]], Any]
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Rows sorted ascending by ``key`` with their keys; cached until the table changes.

        Object Query pages bisect into this, so a page costs a lookup and a short scan rather than
        a sort of the whole table (benchmarks page through large tables while marking rows).
        """
        cached = self._sorted.get(name)
        if cached is not None and cached[0] == self._version:
            return cached[1], cached[2]
        rows = sorted(self.rows.values(), key=key)
        keys = [key(row) for row in rows]
        self._sorted[name] = (self._version, keys, rows)
        return keys, rows


def new_tables() -> dict[str, Table]:
    """One empty table per object type, keyed by object name (``Invoice``)."""
    return {name: Table(obj) for name, obj in OBJECTS.items()}
