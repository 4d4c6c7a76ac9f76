"""The close lock: one Redis key per (connection, period) naming the chain that drives its close.

The value is a :class:`Holder` (JSON): the chain's token, the close run, the holder process
(:mod:`.identity`) and whether a step is executing. Every change is a compare-and-set on the
whole value and a release is a compare-and-delete (both scripts in :mod:`.scripts`), so a holder
that lost the lock never overwrites or removes its successor's.
A holder process that died on this host is taken over at once; one on another host is waited out
until its lease ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from shared.coordination.identity import Identity, process_alive, this_process
from shared.coordination.scripts import COMPARE_AND_DELETE, CREATE_OR_COMPARE_AND_SET

# The lock while a step runs: renewed as entries go; it must outlive the longest single API call
# of a step (a holder that died on this host is detected at once; on another host the lock is
# only free after this long). Between steps: the countdown plus LOCK_GRACE.
RUNNING_LOCK_TTL = 900.0
LOCK_GRACE = 120.0

LockOutcome = Literal["acquired", "busy", "stale"]


class LockLost(Exception):
    """Another driver took the close lock: stop before the next external effect."""


def close_lock_key(connection: str, period_name: str) -> str:
    return f"ledgerbridge:{connection}:close:lock:{period_name}"


@dataclass(frozen=True)
class Holder:
    """The value of a close lock: which chain (``token``) of which run holds it, where, and
    whether a step is executing (``running``) or the chain is between steps."""

    token: str
    run_id: int
    host: str
    pid: int
    started: float
    running: bool

    def dumps(self) -> str:
        return json.dumps(
            {
                "token": self.token,
                "run_id": self.run_id,
                "host": self.host,
                "pid": self.pid,
                "started": self.started,
                "running": self.running,
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> Holder:
        data = json.loads(raw)
        return cls(
            token=str(data["token"]),
            run_id=int(data["run_id"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            started=float(data["started"]),
            running=bool(data["running"]),
        )


class CloseLock:
    """The Redis lock per (connection, period) that makes one chain drive a period's close.

    ``acquire(token, run_id, takeover=...)``:

    * absent, or held by this chain between steps, or by a process that no longer exists ->
      ``acquired`` (running; expires after ``running_ttl`` unless :meth:`heartbeat` renews it);
    * held by the same chain in another live process (a duplicate delivery) -> ``stale``;
    * held by another chain of the same run: a step task drops out (``stale``); a take-over
      (``takeover=True``: an explicit resume) takes it between steps, else ``busy``;
    * held by a live process for another run of the period -> ``busy`` (try later).

    Between steps the holder :meth:`park` s the lock for the countdown plus ``grace``.
    """

    def __init__(
        self,
        redis: Any,
        connection: str,
        period_name: str,
        *,
        identity: Identity | None = None,
        alive: Callable[[str, int, float], bool] = process_alive,
        running_ttl: float = RUNNING_LOCK_TTL,
        grace: float = LOCK_GRACE,
    ) -> None:
        self.redis = redis
        self.key = close_lock_key(connection, period_name)
        self.identity = identity or this_process()
        self._alive = alive
        self.running_ttl = running_ttl
        self.grace = grace
        self._cas = redis.register_script(CREATE_OR_COMPARE_AND_SET)
        self._cad = redis.register_script(COMPARE_AND_DELETE)

    def _me(self, token: str, run_id: int, *, running: bool) -> Holder:
        host, pid, started = self.identity
        return Holder(token, run_id, host, pid, started, running)

    def _set(self, expected: bytes | None, new: Holder, ttl: float) -> bool:
        old = "" if expected is None else expected.decode()
        return bool(self._cas(keys=[self.key], args=[old, new.dumps(), int(max(ttl, 1.0) * 1000)]))

    def holder(self) -> Holder | None:
        raw = self.redis.get(self.key)
        return None if raw is None else Holder.loads(raw)

    def is_mine(self, holder: Holder) -> bool:
        return (holder.host, holder.pid, holder.started) == self.identity

    def holder_alive(self, holder: Holder) -> bool:
        return self.is_mine(holder) or self._alive(holder.host, holder.pid, holder.started)

    def _decide(self, holder: Holder, token: str, run_id: int, takeover: bool) -> str:
        alive = self.holder_alive(holder)
        if holder.token == token:
            if self.is_mine(holder) or not holder.running or not alive:
                return "take"
            return "stale"
        if not alive:
            return "take"
        if holder.run_id == run_id:
            if takeover:
                return "busy" if holder.running else "take"
            return "stale"
        return "busy"

    def acquire(self, token: str, run_id: int, *, takeover: bool = False) -> LockOutcome:
        mine = self._me(token, run_id, running=True)
        for _ in range(5):
            raw = self.redis.get(self.key)
            if raw is None:
                if self._set(None, mine, self.running_ttl):
                    return "acquired"
                continue
            decision = self._decide(Holder.loads(raw), token, run_id, takeover)
            if decision != "take":
                return "busy" if decision == "busy" else "stale"
            if self._set(raw, mine, self.running_ttl):
                return "acquired"
        return "busy"

    def _own_value(self, token: str) -> bytes | None:
        """The lock's value when chain ``token`` holds it, else None."""
        raw: bytes | None = self.redis.get(self.key)
        if raw is None or Holder.loads(raw).token != token:
            return None
        return raw

    def heartbeat(self, token: str, run_id: int) -> None:
        """Renew a running lock; raises :class:`LockLost` if another driver holds it now."""
        raw = self._own_value(token)
        if raw is None or not self._set(raw, self._me(token, run_id, running=True), self.running_ttl):
            raise LockLost(f"the close lock {self.key} is no longer held by driver {token}")

    def park(self, token: str, run_id: int, seconds: float) -> None:
        """Between steps: keep the lock for this chain for ``seconds`` plus the grace period."""
        raw = self._own_value(token)
        if raw is not None:
            self._set(raw, self._me(token, run_id, running=False), seconds + self.grace)

    def release(self, token: str) -> None:
        """Delete the lock if chain ``token`` still holds it (a successor's is left alone)."""
        raw = self._own_value(token)
        if raw is not None:
            self._cad(keys=[self.key], args=[raw])
