"""One Redis lock per (connection, job): two beat processes or an engineer's ``ledgerbridge sync``
never run the same pull (or mark run, or sweep) twice at once.

The lock has a TTL and is extended while the job runs (:meth:`RunLock.extend`, called per page).
Its value names the holding process (:func:`~shared.coordination.limits.holder_token`): a holder
that died on this host (SIGKILL, OOM kill) is reclaimed at once by the next run that finds it;
one that died on another host lets the lock expire. If Redis loses it (a flush), :meth:`extend` returns False and
the job stops at the next page: two runs of one pull would not corrupt anything - every write is
idempotent and the mark never moves backwards - but they would waste calls. The lock is a
courtesy, the ledger is the guarantee.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

from redis import Redis
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from shared.coordination.limits import holder_token, reap_key


def lock_key(connection: str, job: str) -> str:
    return f"ledgerbridge:{connection}:lock:{job}"


class RunLock:
    """``with RunLock(redis, "conn", "pull:invoices", ttl=300) as held: if held: ...``"""

    def __init__(self, redis: Redis[Any], connection: str, job: str, *, ttl: float) -> None:
        self.key = lock_key(connection, job)
        self.ttl = ttl
        self._lock = Lock(redis, self.key, timeout=ttl, thread_local=False)
        self.held = False

    def acquire(self, *, wait: float = 0.0) -> bool:
        """Take the lock, waiting up to ``wait`` seconds; False when someone else holds it."""
        deadline = time.monotonic() + wait
        while True:
            if self._take():
                self.held = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _take(self) -> bool:
        if self._lock.acquire(blocking=False, token=holder_token()):
            return True
        # A holder that died on this host held the lock by accident of its death: not for its TTL.
        return reap_key(self._lock.redis, self.key) and self._lock.acquire(
            blocking=False, token=holder_token()
        )

    def extend(self) -> bool:
        """Reset the TTL; False when the lock is no longer ours (expired or flushed)."""
        if not self.held:
            return False
        try:
            self._lock.extend(self.ttl, replace_ttl=True)
        except (LockNotOwnedError, LockError):
            self.held = False
            return False
        return True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(LockNotOwnedError, LockError):
            self._lock.release()  # expired or flushed meanwhile: nothing to release

    def holder_ttl(self) -> float | None:
        """Seconds until the current holder's lock expires (None when nobody holds it)."""
        ms = self._lock.redis.pttl(self.key)
        return None if ms is None or ms < 0 else ms / 1000.0

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
