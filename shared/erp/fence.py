"""The send deadline of a create: a posting claim the ERP call must not outlive.

A worker commits a row ``posting`` with a deadline (``next_attempt_at``) before it calls the ERP.
Past that deadline another worker treats the row as in doubt: it looks the document up by
natural key and creates it again if it is missing. That is safe only if the first worker's create
can no longer reach the ERP by then. A call may spend long before it is sent (queued for a
concurrency slot held by a killed worker, a 429 pause, a re-login), so the deadline travels with
the call and the ERP client checks it at the last moment:

* before a create (a non-repeatable request) is sent, at least ``reserve`` seconds must remain,
  else :class:`~shared.erp.errors.NotSent` is raised and nothing leaves the process;
* the request's timeout is cut to the time left minus the reserve, so an answer that does not
  come in time ends the wait (the outcome is then unknown and the lookup settles it) well before
  another worker may look.

The deadline is a :mod:`contextvars` variable on the monotonic clock, set by the flow around the
ERP call (:func:`send_by`); calls outside any posting (lookups, upserts by key) are unfenced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from shared.erp.errors import NotSent

#: Seconds kept free between the end of the last possible wait for an answer and the deadline.
MIN_RESERVE = 1.0
#: The shortest request timeout worth sending a create with.
MIN_REQUEST_SECONDS = 1.0


@dataclass(frozen=True)
class Deadline:
    """``at`` on ``clock`` (seconds), with ``reserve`` seconds kept free before it."""

    at: float
    reserve: float
    clock: Callable[[], float] = time.monotonic

    def request_timeout(self, default: float, what: str, *, api: str = "erp") -> float:
        """The timeout to send ``what`` with: ``default`` cut to the time left minus the reserve.
        Raises :class:`NotSent` when less than :data:`MIN_REQUEST_SECONDS` would be left."""
        left = self.at - self.clock() - self.reserve
        if left < MIN_REQUEST_SECONDS:
            raise NotSent(
                f"{what} was not sent: its posting claim ends in {max(self.at - self.clock(), 0.0):.1f}s, "
                "too soon for an answer; it will be tried again",
                api=api,
            )
        return min(default, left)


_current: ContextVar[Deadline | None] = ContextVar("ledgerbridge_send_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the posting this thread is in, if any."""
    return _current.get()


@contextmanager
def send_by(seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Iterator[Deadline]:
    """Fence the ERP calls inside: creates must be answered within ``seconds`` from now.

    The reserve is a tenth of ``seconds`` (at least :data:`MIN_RESERVE`): room for clock skew
    between workers and for the ERP to finish a request whose answer we stopped waiting for.
    """
    deadline = Deadline(at=clock() + seconds, reserve=max(MIN_RESERVE, seconds / 10.0), clock=clock)
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
