"""Test doubles of the item-level :class:`~shared.item_level.context.Dispatcher` (the Celery one is
``worker/tasks``): one runs the work at once in this thread, one only records what it was asked."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shared.item_level.context import ItemContext
from shared.item_level.marking import mark_stream
from shared.item_level.posting import post_records
from shared.item_level.push import process_callouts
from shared.item_level.streams import get_stream


class InlineDispatcher:
    """Runs dispatched work at once in this thread. Work asked
    for *later* (a countdown) is kept in :attr:`delayed` instead; :meth:`run_delayed` runs it."""

    def __init__(self, context: Callable[[str], ItemContext]) -> None:
        self._context = context
        self.posted: list[list[int]] = []
        self.marked: list[str] = []
        self.delayed: list[tuple[str, list[int]]] = []

    def post(self, connection: str, record_ids: Sequence[int], *, countdown: float = 0.0) -> None:
        if countdown > 0:
            self.delayed.append((connection, list(record_ids)))
            return
        self.posted.append(list(record_ids))
        post_records(self._context(connection), record_ids)

    def run_delayed(self) -> int:
        """Run the work asked for later, now; returns how many batches ran."""
        batches, self.delayed = self.delayed, []
        for connection, ids in batches:
            self.post(connection, ids)
        return len(batches)

    def mark(self, connection: str, stream: str) -> None:
        self.marked.append(stream)
        mark_stream(self._context(connection), get_stream(stream))

    def callouts(self, connection: str, callout_ids: Sequence[int]) -> None:
        process_callouts(self._context(connection), callout_ids)

    def waiting(self) -> int:
        return len(self.delayed)


class RecordingDispatcher:
    """Remembers what it was asked to do and does nothing (tests drive the work by hand)."""

    def __init__(self) -> None:
        self.posted: list[tuple[list[int], float]] = []
        self.marked: list[str] = []
        self.callout_ids: list[int] = []
        self.queued: int | None = 0  # what :meth:`waiting` answers (None: the broker did not answer)

    def post(self, connection: str, record_ids: Sequence[int], *, countdown: float = 0.0) -> None:
        self.posted.append((list(record_ids), countdown))

    def mark(self, connection: str, stream: str) -> None:
        self.marked.append(stream)

    def callouts(self, connection: str, callout_ids: Sequence[int]) -> None:
        self.callout_ids.extend(callout_ids)

    def waiting(self) -> int | None:
        return self.queued

    @property
    def post_ids(self) -> list[int]:
        return [i for ids, _ in self.posted for i in ids]
