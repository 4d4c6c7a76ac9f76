"""The close lock: one chain drives a period's close; duplicates and old chains drop out."""

from __future__ import annotations

import pytest

from shared.summary_gl import CloseLock, LockLost

A = ("host-a", 101, 1.0)
B = ("host-a", 202, 2.0)


def lock(redis, identity, dead=()):
    return CloseLock(redis, "conn1", "Dec'16", identity=identity, alive=lambda *who: who not in dead)


def test_acquire_when_free_then_same_driver_again(fake_redis):
    a = lock(fake_redis, A)
    assert a.acquire("chain-1", 7) == "acquired"
    assert a.acquire("chain-1", 7) == "acquired"
    holder = a.holder()
    assert (holder.token, holder.run_id, holder.pid, holder.running) == ("chain-1", 7, 101, True)
    assert fake_redis.pttl(a.key) > 0
    assert a.key == "ledgerbridge:conn1:close:lock:Dec'16"


def test_acquire_by_old_chain_step_task_is_stale(fake_redis):
    assert lock(fake_redis, A).acquire("new-chain", 7) == "acquired"
    assert lock(fake_redis, B).acquire("old-chain", 7) == "stale"


def test_acquire_by_duplicate_of_running_task_is_stale(fake_redis):
    assert lock(fake_redis, A).acquire("chain-1", 7) == "acquired"
    assert lock(fake_redis, B).acquire("chain-1", 7) == "stale"


def test_next_step_of_same_chain_in_another_process_takes_parked_lock(fake_redis):
    a = lock(fake_redis, A)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 30.0)
    assert a.holder().running is False
    b = lock(fake_redis, B)
    assert b.acquire("chain-1", 7) == "acquired"
    assert b.holder().pid == 202


def test_takeover_waits_while_a_live_process_runs_a_step(fake_redis):
    lock(fake_redis, A).acquire("chain-1", 7)
    assert lock(fake_redis, B).acquire("chain-2", 7, takeover=True) == "busy"


def test_takeover_between_steps_then_old_chain_drops_out(fake_redis):
    a = lock(fake_redis, A)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 5.0)
    assert lock(fake_redis, B).acquire("chain-2", 7, takeover=True) == "acquired"
    assert a.acquire("chain-1", 7) == "stale"


def test_lock_of_dead_process_is_taken_over(fake_redis):
    lock(fake_redis, A).acquire("chain-1", 7)
    assert lock(fake_redis, B, dead={A}).acquire("chain-2", 7, takeover=True) == "acquired"
    assert lock(fake_redis, B).holder().token == "chain-2"


def test_other_run_of_the_same_period_is_busy_until_free(fake_redis):
    a = lock(fake_redis, A)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 5.0)
    b = lock(fake_redis, B)
    assert b.acquire("chain-9", 8, takeover=True) == "busy"
    a.release("chain-1")
    assert b.acquire("chain-9", 8, takeover=True) == "acquired"


def test_heartbeat_after_takeover_raises_lock_lost(fake_redis):
    a = lock(fake_redis, A)
    a.acquire("chain-1", 7)
    lock(fake_redis, B, dead={A}).acquire("chain-2", 7, takeover=True)
    with pytest.raises(LockLost):
        a.heartbeat("chain-1", 7)


def test_release_only_removes_own_lock(fake_redis):
    a = lock(fake_redis, A)
    a.acquire("chain-1", 7)
    a.release("chain-other")
    assert a.holder() is not None
    a.release("chain-1")
    assert a.holder() is None


def test_park_sets_ttl_to_countdown_plus_grace(fake_redis):
    a = CloseLock(fake_redis, "conn1", "P", identity=A, grace=60.0)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 30.0)
    assert 89_000 < fake_redis.pttl(a.key) <= 90_000
