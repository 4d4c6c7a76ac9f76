from __future__ import annotations

import os

import pytest

from shared.backoff import exponential, full_jitter
from shared.coordination.identity import machine
from shared.coordination.limits import ConcurrencyLimiter, ThrottleTimeout, TokenBucket


@pytest.fixture
def k(connection_name):
    """Keys of this test only (the real Redis is shared): ``k("bucket")``."""
    return lambda name: f"ledgerbridge:{connection_name}:{name}"


def test_token_bucket_admits_burst_then_asks_to_wait(any_redis, k):
    bucket = TokenBucket(any_redis, k("b"), rate=1.0, capacity=3)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.try_acquire()
    assert 0.9 < wait <= 1.0


def test_token_bucket_shared_between_clients_of_one_redis(any_redis, k):
    first = TokenBucket(any_redis, k("shared"), rate=0.5, capacity=1)
    second = TokenBucket(any_redis, k("shared"), rate=0.5, capacity=1)
    assert first.try_acquire() == 0.0
    assert second.try_acquire() > 1.5


def test_token_bucket_pause_blocks_everyone_and_never_shortens(any_redis, k):
    bucket = TokenBucket(any_redis, k("p"), rate=100.0, capacity=100)
    assert bucket.pause(5) == pytest.approx(5, abs=0.05)
    assert bucket.pause(1) == pytest.approx(5, abs=0.05)
    assert bucket.try_acquire() == pytest.approx(5, abs=0.05)


def test_token_bucket_acquire_sleeps_then_raises_past_max_wait(any_redis, k):
    slept: list[float] = []
    bucket = TokenBucket(any_redis, k("s"), rate=1.0, capacity=1, sleep=slept.append)
    bucket.acquire()
    bucket.pause(60)
    with pytest.raises(ThrottleTimeout) as info:
        bucket.acquire(max_wait=10)
    assert info.value.wait == pytest.approx(60, abs=0.1)
    assert slept == []


def test_per_minute_bucket_rate_and_burst(any_redis, k):
    bucket = TokenBucket.per_minute(any_redis, k("m"), 150, burst=1)
    assert bucket.rate == 2.5
    assert bucket.capacity == 1


def test_concurrency_limiter_caps_holders_and_releases(any_redis, k):
    limiter = ConcurrencyLimiter(any_redis, k("c"), limit=2, sleep=lambda _s: None)
    with limiter.slot(), limiter.slot():
        assert limiter.in_use() == 2
        assert limiter.try_enter() is None
        with pytest.raises(ThrottleTimeout), limiter.slot(max_wait=0.05):
            pass
    assert limiter.in_use() == 0


def test_a_slot_with_a_permit_takes_both_or_neither(any_redis, k):
    bucket = TokenBucket(any_redis, k("both:bucket"), rate=1.0, capacity=1)
    limiter = ConcurrencyLimiter(any_redis, k("both:slots"), limit=1)
    token, wait = limiter.try_enter_with(bucket)
    assert token is not None and wait == 0.0
    assert limiter.in_use() == 1
    # Every slot held: no permit is spent.
    assert limiter.try_enter_with(bucket) == (None, 0.0)
    limiter.leave(token)
    # A free slot but no permit: the slot is not taken, and the wait is the bucket's.
    token, wait = limiter.try_enter_with(bucket)
    assert token is None and 0.9 < wait <= 1.0
    assert limiter.in_use() == 0


def test_a_slot_with_a_permit_waits_out_a_paused_bucket_then_gives_up_past_max_wait(any_redis, k):
    slept: list[float] = []
    bucket = TokenBucket(any_redis, k("paused:bucket"), rate=100.0, capacity=100)
    limiter = ConcurrencyLimiter(any_redis, k("paused:slots"), limit=5, sleep=slept.append)
    bucket.pause(60)
    with pytest.raises(ThrottleTimeout) as info, limiter.slot(max_wait=10, bucket=bucket):
        pass
    assert info.value.wait == pytest.approx(60, abs=0.1)
    assert slept == [] and limiter.in_use() == 0


def test_a_slot_with_a_permit_sleeps_for_the_permit_then_holds_the_slot(any_redis, k):
    bucket = TokenBucket(any_redis, k("sleepy:bucket"), rate=1.0, capacity=1)
    assert bucket.try_acquire() == 0.0  # the one permit is gone
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        any_redis.hset(k("sleepy:bucket"), "tokens", "1")  # the bucket refills while we sleep

    limiter = ConcurrencyLimiter(any_redis, k("sleepy:slots"), limit=2, sleep=sleep)
    with limiter.slot(max_wait=5, bucket=bucket) as waited:
        assert limiter.in_use() == 1
    assert len(slept) == 1 and 0.9 < slept[0] <= 1.0 and waited == slept[0]
    assert limiter.in_use() == 0


def test_concurrency_limiter_lease_expires_for_dead_holders(any_redis, k):
    limiter = ConcurrencyLimiter(any_redis, k("lease"), limit=1, lease=-1)
    assert limiter.try_enter() is not None
    assert limiter.try_enter() is not None  # the first lease is already expired


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (9, 5.0)],
)
def test_exponential_backoff_doubles_to_cap(attempt, expected):
    assert exponential(attempt, base=0.5, cap=5.0) == expected


def test_exponential_backoff_floor_applies_after_jitter():
    assert exponential(3, base=1, cap=10, floor=0.25, jitter=lambda _c: 0.0) == 0.25
    for _ in range(50):
        assert 0 <= exponential(4, base=1, cap=10, jitter=full_jitter) <= 8


def _dead_process() -> tuple[int, float]:
    """The pid and start time of a process that has exited."""
    import subprocess
    import sys

    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait(timeout=10)
    return proc.pid, started


def test_a_waiter_frees_the_slots_of_dead_processes_on_its_host_at_once(any_redis, k):

    limiter = ConcurrencyLimiter(any_redis, k("dead"), limit=2, lease=600.0, sleep=lambda seconds: None)
    pid, started = _dead_process()
    host = machine()
    far = 10**10  # leases that would otherwise hold for centuries
    any_redis.zadd(k("dead"), {f"{host}|{pid}|{started}|a": far, f"{host}|{pid}|{started}|b": far})

    with limiter.slot(max_wait=30.0) as waited:  # both slots were a killed worker's
        # Freed after one second of waiting (shorter waits are ordinary contention), not 600 s.
        assert 1.0 <= waited < 1.5
        assert limiter.in_use() == 1


def test_slots_of_live_processes_and_of_other_hosts_are_kept(any_redis, k):
    import os

    import psutil

    limiter = ConcurrencyLimiter(any_redis, k("alive"), limit=2, lease=600.0)
    pid, started = _dead_process()
    me = f"{machine()}|{os.getpid()}|{psutil.Process().create_time()}|x"
    elsewhere = f"another-host|{pid}|{started}|y"  # cannot be checked from here
    any_redis.zadd(k("alive"), {me: 10**10, elsewhere: 10**10, "an-old-token-format": 10**10})

    assert limiter.reap() == 0
    assert limiter.in_use() == 3
    with pytest.raises(ThrottleTimeout), limiter.slot(max_wait=0.05):
        pass


def test_a_lock_left_by_a_dead_process_of_this_host_is_broken_at_once(any_redis, k):
    import time

    from shared.coordination.limits import acquire_lock

    pid, started = _dead_process()
    any_redis.set(k("signin"), f"{machine()}|{pid}|{started}|n", px=600_000)
    lock = any_redis.lock(k("signin"), timeout=60)

    begun = time.monotonic()
    assert acquire_lock(lock, any_redis, k("signin"), wait=30.0)
    assert time.monotonic() - begun < 5.0  # not the lock's remaining 600 s
    assert any_redis.get(k("signin")).decode().split("|")[1] == str(os.getpid())
    lock.release()


def test_a_lock_held_by_a_live_process_or_another_host_is_waited_for(any_redis, k):

    from shared.coordination.limits import acquire_lock, holder_token, reap_key

    pid, started = _dead_process()
    any_redis.set(k("mine"), holder_token(), px=600_000)
    any_redis.set(k("theirs"), f"other-host|{pid}|{started}|n", px=600_000)

    assert not reap_key(any_redis, k("mine")) and not reap_key(any_redis, k("theirs"))
    assert not acquire_lock(any_redis.lock(k("mine"), timeout=60), any_redis, k("mine"), wait=0.1)
    assert not acquire_lock(any_redis.lock(k("theirs"), timeout=60), any_redis, k("theirs"), wait=0.1)
    assert machine() != "other-host"


def test_a_holder_in_another_pid_namespace_of_this_host_is_presumed_alive():
    import socket

    from shared.coordination.identity import process_alive

    pid, started = _dead_process()
    # Same host name (e.g. containers with host networking), other pids: nothing can be told.
    assert process_alive(f"{socket.gethostname()}/pid:[1]", pid, started)
    assert not process_alive(machine(), pid, started)
