"""A notifier that keeps what it was sent (:class:`~shared.notify.Notifier`)."""

from __future__ import annotations

from shared.notify import Notice


class RecordingNotifier:
    """Keeps every notice in ``sent`` (what :meth:`send` and :meth:`deliver` were given)."""

    def __init__(self) -> None:
        self.sent: list[Notice] = []

    def send(self, notice: Notice) -> None:
        self.sent.append(notice)

    def deliver(self, notice: Notice) -> None:
        self.sent.append(notice)
