"""Every Lua script of shared/coordination/scripts.py, run on fakeredis and on the real Redis."""

from __future__ import annotations

import pytest

from shared.coordination import scripts


@pytest.fixture
def key(connection_name: str) -> str:
    return f"ledgerbridge:{connection_name}:script-test"


def test_compare_and_delete_deletes_only_the_value_it_was_given(any_redis, key):
    run = any_redis.register_script(scripts.COMPARE_AND_DELETE)
    any_redis.set(key, "mine")

    assert run(keys=[key], args=["theirs"]) == 0
    assert any_redis.get(key) == b"mine"
    assert run(keys=[key], args=["mine"]) == 1
    assert any_redis.get(key) is None
    assert run(keys=[key], args=["mine"]) == 0  # gone: nothing to delete


def test_compare_and_set_replaces_only_the_value_it_was_given_with_a_new_expiry(any_redis, key):
    run = any_redis.register_script(scripts.COMPARE_AND_SET)
    any_redis.set(key, "old")

    assert run(keys=[key], args=["other", "new", 60]) == 0
    assert any_redis.get(key) == b"old" and any_redis.ttl(key) == -1
    assert run(keys=[key], args=["old", "new", 60]) == 1
    assert any_redis.get(key) == b"new" and 0 < any_redis.ttl(key) <= 60


def test_compare_and_expire_renews_only_the_value_it_was_given(any_redis, key):
    run = any_redis.register_script(scripts.COMPARE_AND_EXPIRE)
    any_redis.set(key, "held", ex=5)

    assert run(keys=[key], args=["other", 120]) == 0
    assert any_redis.ttl(key) <= 5
    assert run(keys=[key], args=["held", 120]) == 1
    assert 5 < any_redis.ttl(key) <= 120


def test_create_or_compare_and_set_creates_when_absent_and_replaces_only_the_value_given(any_redis, key):
    run = any_redis.register_script(scripts.CREATE_OR_COMPARE_AND_SET)

    assert run(keys=[key], args=["held", "first", 60_000]) == 0  # absent, but a value was expected
    assert any_redis.get(key) is None
    assert run(keys=[key], args=["", "first", 60_000]) == 1  # '' = absent: created
    assert any_redis.get(key) == b"first" and 59_000 < any_redis.pttl(key) <= 60_000
    assert run(keys=[key], args=["", "again", 60_000]) == 0  # present: not created over it
    assert run(keys=[key], args=["other", "second", 1_500]) == 0
    assert any_redis.get(key) == b"first"
    assert run(keys=[key], args=["first", "second", 1_500]) == 1
    assert any_redis.get(key) == b"second" and 1_000 < any_redis.pttl(key) <= 1_500


def test_bucket_spends_then_says_how_long_to_wait(any_redis, key):
    take = any_redis.register_script(scripts.BUCKET_LUA)
    keys = [f"{key}:bucket", f"{key}:pause"]

    spent = [float(take(keys=keys, args=[1.0, 2, 1])) for _ in range(3)]

    assert spent[:2] == [0.0, 0.0]
    assert 0.9 < spent[2] <= 1.0  # the third waits about a second at 1 a second


def test_pause_holds_the_bucket_and_never_shortens(any_redis, key):
    pause = any_redis.register_script(scripts.PAUSE_LUA)
    take = any_redis.register_script(scripts.BUCKET_LUA)

    assert float(pause(keys=[f"{key}:pause"], args=[5])) == pytest.approx(5, abs=0.1)
    assert float(pause(keys=[f"{key}:pause"], args=[1])) == pytest.approx(5, abs=0.1)
    assert float(take(keys=[f"{key}:bucket", f"{key}:pause"], args=[100.0, 100, 1])) == pytest.approx(
        5, abs=0.1
    )


def test_slots_admit_up_to_the_limit_and_free_on_expiry(any_redis, key):
    take = any_redis.register_script(scripts.SLOT_LUA)

    assert [take(keys=[key], args=[2, 60, holder]) for holder in ("a", "b", "c")] == [1, 1, 0]
    any_redis.zadd(key, {"a": 0, "b": 0})  # both leases long expired
    assert take(keys=[key], args=[2, 60, "c"]) == 1


def test_slot_and_permit_take_both_or_neither(any_redis, key):
    take = any_redis.register_script(scripts.SLOT_AND_PERMIT_LUA)
    keys = [f"{key}:bucket", f"{key}:pause", f"{key}:slots"]

    assert take(keys=keys, args=[1.0, 1, 1, 1, 60, "a"]) == b"0"  # slot and permit taken
    assert take(keys=keys, args=[1.0, 1, 1, 1, 60, "b"]) == b"-1"  # no slot: no permit spent
    any_redis.zrem(f"{key}:slots", "a")
    waited = float(take(keys=keys, args=[1.0, 1, 1, 1, 60, "b"]))  # a slot, but no permit yet
    assert 0.0 < waited <= 1.0
    assert any_redis.zcard(f"{key}:slots") == 0  # ... so no slot was kept either


def test_decrement_to_zero_counts_down_and_never_below_zero(any_redis, key):
    run = any_redis.register_script(scripts.DECREMENT_TO_ZERO)
    any_redis.set(key, 2)

    assert run(keys=[key], args=[60]) == 1
    assert run(keys=[key], args=[60]) == 0
    assert run(keys=[key], args=[60]) == 0  # counted down twice (delivered again): stays at 0
    assert any_redis.get(key) == b"0" and 0 < any_redis.ttl(key) <= 60
