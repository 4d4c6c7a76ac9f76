"""The close lock: one chain drives a period's close; duplicates and old chains drop out.

Every test runs on fakeredis and on the real Redis (``any_redis``): the lock's compare-and-set and
compare-and-delete scripts must behave the same on both.
"""

from __future__ import annotations

import json

import pytest

from shared.coordination.close_lock import CloseLock, Holder, LockLost

A = ("host-a", 101, 1.0)
B = ("host-a", 202, 2.0)


@pytest.fixture
def make_lock(any_redis, connection_name):
    def build(identity, dead=(), **options):
        return CloseLock(
            any_redis,
            connection_name,
            "Dec'16",
            identity=identity,
            alive=lambda *who: who not in dead,
            **options,
        )

    yield build
    any_redis.delete(f"ledgerbridge:{connection_name}:close:lock:Dec'16")


def test_acquire_when_free_then_same_driver_again(any_redis, make_lock, connection_name):
    a = make_lock(A)
    assert a.acquire("chain-1", 7) == "acquired"
    assert a.acquire("chain-1", 7) == "acquired"
    holder = a.holder()
    assert (holder.token, holder.run_id, holder.pid, holder.running) == ("chain-1", 7, 101, True)
    assert 899_000 < any_redis.pttl(a.key) <= 900_000
    assert a.key == f"ledgerbridge:{connection_name}:close:lock:Dec'16"


def test_the_value_is_the_holder_as_json(any_redis, make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)

    stored = json.loads(any_redis.get(a.key))

    assert stored == {
        "host": "host-a",
        "pid": 101,
        "run_id": 7,
        "running": True,
        "started": 1.0,
        "token": "chain-1",
    }
    assert Holder.loads(any_redis.get(a.key)) == Holder("chain-1", 7, "host-a", 101, 1.0, True)


def test_acquire_by_old_chain_step_task_is_stale(make_lock):
    assert make_lock(A).acquire("new-chain", 7) == "acquired"
    assert make_lock(B).acquire("old-chain", 7) == "stale"


def test_acquire_by_duplicate_of_running_task_is_stale(make_lock):
    assert make_lock(A).acquire("chain-1", 7) == "acquired"
    assert make_lock(B).acquire("chain-1", 7) == "stale"


def test_next_step_of_same_chain_in_another_process_takes_parked_lock(make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 30.0)
    assert a.holder().running is False
    b = make_lock(B)
    assert b.acquire("chain-1", 7) == "acquired"
    assert b.holder().pid == 202


def test_takeover_waits_while_a_live_process_runs_a_step(make_lock):
    make_lock(A).acquire("chain-1", 7)
    assert make_lock(B).acquire("chain-2", 7, takeover=True) == "busy"


def test_takeover_between_steps_then_old_chain_drops_out(make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 5.0)
    assert make_lock(B).acquire("chain-2", 7, takeover=True) == "acquired"
    assert a.acquire("chain-1", 7) == "stale"


def test_lock_of_dead_process_is_taken_over(make_lock):
    make_lock(A).acquire("chain-1", 7)
    assert make_lock(B, dead={A}).acquire("chain-2", 7, takeover=True) == "acquired"
    assert make_lock(B).holder().token == "chain-2"


def test_other_run_of_the_same_period_is_busy_until_free(make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 5.0)
    b = make_lock(B)
    assert b.acquire("chain-9", 8, takeover=True) == "busy"
    a.release("chain-1")
    assert b.acquire("chain-9", 8, takeover=True) == "acquired"


def test_heartbeat_renews_the_running_lock(any_redis, make_lock):
    a = make_lock(A, running_ttl=60.0)
    a.acquire("chain-1", 7)
    any_redis.pexpire(a.key, 5_000)

    a.heartbeat("chain-1", 7)

    assert 59_000 < any_redis.pttl(a.key) <= 60_000
    assert a.holder().running is True


def test_heartbeat_after_takeover_raises_lock_lost(make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)
    make_lock(B, dead={A}).acquire("chain-2", 7, takeover=True)
    with pytest.raises(LockLost):
        a.heartbeat("chain-1", 7)


def test_heartbeat_after_the_lock_expired_raises_lock_lost(any_redis, make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)
    any_redis.delete(a.key)  # expired, or Redis lost it

    with pytest.raises(LockLost):
        a.heartbeat("chain-1", 7)
    assert a.holder() is None  # a lost lock is not recreated by its old holder


def test_release_only_removes_own_lock(make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)
    a.release("chain-other")
    assert a.holder() is not None
    a.release("chain-1")
    assert a.holder() is None


def test_park_and_release_leave_a_successors_lock_alone(make_lock):
    a = make_lock(A)
    a.acquire("chain-1", 7)
    b = make_lock(B, dead={A})
    assert b.acquire("chain-2", 7, takeover=True) == "acquired"

    a.park("chain-1", 7, 30.0)
    a.release("chain-1")

    assert b.holder() == Holder("chain-2", 7, "host-a", 202, 2.0, True)


def test_park_sets_ttl_to_countdown_plus_grace(any_redis, make_lock):
    a = make_lock(A, grace=60.0)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 30.0)
    assert 89_000 < any_redis.pttl(a.key) <= 90_000


def test_park_keeps_a_fraction_of_a_second(any_redis, make_lock):
    a = make_lock(A, grace=0.0)
    a.acquire("chain-1", 7)
    a.park("chain-1", 7, 2.5)
    assert 2_000 < any_redis.pttl(a.key) <= 2_500
