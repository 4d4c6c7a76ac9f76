"""A connection's posting batches waiting in the broker are counted, so those beyond its fair
share can be sent behind every other connection's."""

from __future__ import annotations

from shared.coordination import fair_share


def test_a_connection_s_batches_are_counted_as_they_are_sent_and_as_they_leave(fake_redis):
    counts = [fair_share.batch_sent(fake_redis, "big") for _ in range(fair_share.FAIR_SHARE_BATCHES + 2)]

    assert counts == list(range(1, fair_share.FAIR_SHARE_BATCHES + 3))
    assert [fair_share.within_share(n) for n in counts[-3:]] == [True, False, False]
    assert fair_share.batch_sent(fake_redis, "small") == 1  # each connection has its own share
    assert 0 < fake_redis.ttl(fair_share.queued_key("big")) <= fair_share.COUNT_SECONDS

    assert fair_share.batch_left(fake_redis, "big") == fair_share.FAIR_SHARE_BATCHES + 1


def test_a_batch_counted_out_twice_never_makes_the_count_negative(fake_redis):
    fair_share.batch_sent(fake_redis, "acme")

    assert fair_share.batch_left(fake_redis, "acme") == 0
    assert fair_share.batch_left(fake_redis, "acme") == 0  # delivered again after a worker died
    assert fair_share.batch_sent(fake_redis, "acme") == 1


def test_a_count_redis_forgot_starts_again_from_nothing(fake_redis):
    assert fair_share.batch_left(fake_redis, "acme") == 0
    assert fair_share.batch_sent(fake_redis, "acme") == 1


def test_a_share_of_zero_puts_every_batch_within_it():
    assert fair_share.within_share(10_000, 0)
    assert not fair_share.within_share(9, 8)
